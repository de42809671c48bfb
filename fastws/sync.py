"""A blocking-socket WebSocket client on fastws' protocol core.

    from fastws.sync import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")
        print(ws.recv())

Why it exists: load generators such as locust run users as gevent greenlets, where an asyncio
client cannot run (`asyncio.run()` inside a running loop) and a client with a helper thread
per connection costs too much. This client has no thread and no event loop of its own: it
calls plain `socket` methods, which gevent's monkey-patching turns cooperative, and the same
code works unpatched in ordinary threads.

Concurrency: one reader at a time (`recv`, or a `ping`/`close` that has to read), any number
of senders. A `ping()` or `close()` made while another thread/greenlet is reading waits for
that reader to see the pong or the Close frame instead of reading itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl as _ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .assembler import UNBOUNDED
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    closed,
)
from .message import Message
from .payload import as_payload
from .protocol.client import ClientHandshake, HeadersLike, compression_options, parse_uri
from .protocol.connection import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    Close,
    Connection,
    Failure,
    Pong,
    State,
)
from .protocol.deflate import DeflateOptions, PerMessageDeflate
from .protocol.frames import CloseCode
from .protocol.handshake import ClientResponse
from .protocol.pings import PingTracker

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "connect",
]

RECEIVE_SIZE = 64 * 1024  # most bytes one read asks for


class _PingWaiter:
    __slots__ = ("done", "rtt")

    def __init__(self) -> None:
        self.rtt: float | None = None
        self.done = threading.Event()


class ClientConnection:
    """An open client connection: `send`, `recv`, `ping`, `close`, and iteration."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        subprotocol: str | None,
        response: ClientResponse,
        leftover: bytes = b"",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        close_timeout: float = 10.0,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.socket = sock
        self.subprotocol = subprotocol
        self.response = response
        self.close_timeout = close_timeout
        self.local_address: Any = sock.getsockname()
        self.remote_address: Any = sock.getpeername()
        #: The close code and reason once known: the peer's, or ours if we closed first.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: True when the peer started the closing handshake (or failed the connection).
        self.closed_by_peer = False
        self._conn = Connection(
            client=True,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            max_fragments=max_fragments,
            deflate=deflate,
            assembler=UNBOUNDED,  # large messages in mmap regions, as the asyncio client's
        )
        #: Whether permessage-deflate was agreed.
        self.compressed = deflate is not None
        self._messages: deque[str | bytes] = deque()
        self._read_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()  # TCP is closed (or about to be): nothing more comes
        self._pings: PingTracker[_PingWaiter] = PingTracker()
        self._poll: Any = None
        if leftover:
            self._receive(leftover)

    # -- reading ------------------------------------------------------------------------------

    def _wait_readable(self, deadline: float) -> bool:
        """Wait for the socket to be readable until `deadline`; False on timeout.

        poll() rather than a socket timeout: the timeout is shared with concurrent senders,
        and a long sendall must not fail because a reader wanted to give up early.
        """
        pending = getattr(self.socket, "pending", None)  # TLS: bytes already decrypted
        if pending is not None and pending():
            return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.socket, select.POLLIN)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        return bool(self._poll.poll(remaining * 1000))

    def _read_once(self, deadline: float | None) -> bool:
        """One read from the socket into the protocol; False if `deadline` passed first."""
        if deadline is not None and not self._wait_readable(deadline):
            return False
        conn = self._conn
        target = conn.payload_target()
        try:
            if target is not None:
                # A large payload in progress: the kernel writes straight into its buffer.
                n = self.socket.recv_into(target)
                if n:
                    conn.payload_written(n)
            else:
                # A fresh bytes per read rather than a buffer per connection: an idle
                # connection then holds no receive buffer (10,000 of them would hold GBs).
                data = self.socket.recv(RECEIVE_SIZE)
                n = len(data)
                if n:
                    conn.receive_data(data)
        except OSError:
            n = 0  # reset by the peer, or closed by another thread: same as EOF here
        if not n:
            conn.receive_eof()
        self._process()
        if not n:
            self._shutdown()
        return True

    def _receive(self, data: bytes) -> None:
        self._conn.receive_data(data)
        self._process()

    def _process(self) -> None:
        conn = self._conn
        events = conn.events
        conn.events = []
        for event in events:
            if isinstance(event, Message):  # a large binary message: this API returns bytes
                with event:
                    self._messages.append(event.tobytes())
            elif isinstance(event, str | bytes):
                self._messages.append(event)
            elif isinstance(event, Pong):
                self._pong(event.payload)
            elif isinstance(event, Close):  # (no Chunk: this client never streams)
                self._peer_closed(event)
        if conn.out:
            self._write(conn.data_to_send())

    def _pong(self, payload: bytes) -> None:
        for waiter, rtt in self._pings.pong(payload, time.monotonic()):
            waiter.rtt = rtt
            waiter.done.set()

    def _peer_closed(self, event: Close) -> None:
        # RFC 6455 7.1.5: the connection's close code is the one in the Close frame received,
        # also when we closed first (the peer may answer with another code); a Failure is
        # our own code for a server that broke the protocol.
        if self.close_code is None or isinstance(event, Failure):
            self.closed_by_peer = True
        self.close_code, self.close_reason = event.code, event.reason

    def _shutdown(self) -> None:
        """Close TCP, wake every waiter."""
        self._conn.state = State.CLOSED
        if self.close_code is None:
            self.close_code, self.close_reason = CloseCode.ABNORMAL, ""
            self.closed_by_peer = True
        self._closed.set()
        for waiter in self._pings.clear():
            waiter.done.set()
        with contextlib.suppress(OSError):
            self.socket.close()

    def _finish_closing(self, deadline: float) -> None:
        """After the Close frames crossed: 7.1.1, the server closes TCP first; wait for it."""
        while not self._closed.is_set():
            if not self._read_once(deadline):
                self._shutdown()

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message: `str` for text, `bytes` for binary.

        Raises TimeoutError after `timeout` seconds, ConnectionClosedOK/ConnectionClosedError
        once the connection is closed and every message received before has been read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("timed out waiting for another reader")
        try:
            while True:
                if self._messages:
                    return self._messages.popleft()
                if self._conn.state is State.CLOSED:
                    if not self._closed.is_set():
                        self._finish_closing(time.monotonic() + self.close_timeout)
                    raise closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
                if self._closed.is_set():
                    raise closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
                if not self._read_once(deadline):
                    raise TimeoutError("timed out waiting for a message")
        finally:
            self._read_lock.release()

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until the connection closes; a close with an error code raises."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- writing ------------------------------------------------------------------------------

    def _write(self, frames: Sequence[bytes]) -> None:
        with self._send_lock:
            try:
                for frame in frames:
                    self.socket.sendall(frame)
            except OSError:
                pass  # the reader will see EOF and report how the connection ended

    def _check_open(self) -> None:
        if self._conn.state is not State.OPEN or self._closed.is_set():
            raise closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")

    def send(self, message: str | bytes | bytearray | memoryview | Any) -> None:
        """Send one message: `str` as text, anything bytes-like as binary."""
        opcode, payload = as_payload(message)
        with self._send_lock:
            self._check_open()
            # Every earlier send returned after sendall(): the socket took its bytes, so the
            # buffer the last payload was masked into may be reused.
            self._conn.mask_buffer_free = True
            frame = self._conn.send_data(opcode, payload)
            try:
                if type(frame) is bytes:
                    self.socket.sendall(frame)
                else:  # (header, masked payload) of a large message: no concatenation
                    for part in frame:
                        self.socket.sendall(part)  # type: ignore[arg-type]
            except OSError as exc:
                raise closed(self.close_code or CloseCode.ABNORMAL, str(exc)) from exc

    def send_ping(self, data: bytes | None = None) -> bytes:
        """Send a ping without waiting; return its payload (random when not given)."""
        return self._send_ping(data)[0]

    def _send_ping(self, data: bytes | None) -> tuple[bytes, _PingWaiter]:
        payload = os.urandom(4) if data is None else bytes(data)
        waiter = _PingWaiter()
        with self._send_lock:
            self._check_open()
            self._pings.add(payload, waiter, time.monotonic())
            self.socket.sendall(self._conn.send_ping(payload))
        return payload, waiter

    def ping(self, data: bytes | None = None, timeout: float | None = None) -> float:
        """Send a ping, wait for its pong, return the round trip in seconds.

        Messages that arrive meanwhile are kept for `recv()`. Raises TimeoutError, or
        ConnectionClosed if the connection closes first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        # The waiter itself, not a lookup: a reader in another thread may take the pong (and
        # remove the entry) before this line runs.
        payload, waiter = self._send_ping(data)
        while not waiter.done.is_set():
            if self._read_lock.acquire(blocking=False):
                try:
                    while not waiter.done.is_set() and not self._closed.is_set():
                        if not self._read_once(deadline):
                            break
                finally:
                    self._read_lock.release()
                if not waiter.done.is_set() and not self._closed.is_set():
                    self._pings.discard(payload)
                    raise TimeoutError("no pong within the timeout")
            else:
                # Someone else is reading: it will set the event when the pong arrives.
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not waiter.done.wait(remaining):
                    self._pings.discard(payload)
                    raise TimeoutError("no pong within the timeout")
        if waiter.rtt is None:
            raise closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        return waiter.rtt

    # -- closing ------------------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Run the closing handshake (at most `close_timeout` seconds), then close TCP.

        Messages still unread are dropped. Safe to call more than once and from another
        thread/greenlet than the reader.
        """
        with self._send_lock:
            if self._conn.state is State.OPEN and not self._closed.is_set():
                frame = self._conn.send_close(code, reason)
                if self.close_code is None:
                    self.close_code, self.close_reason = code, reason
                with contextlib.suppress(OSError):
                    self.socket.sendall(frame)
        deadline = time.monotonic() + self.close_timeout
        if self._read_lock.acquire(blocking=False):
            try:
                self._finish_closing(deadline)
            finally:
                self._read_lock.release()
        elif not self._closed.wait(self.close_timeout):
            self._shutdown()  # the reader is stuck: drop the connection, which wakes it

    def abort(self) -> None:
        """Close TCP at once, without a closing handshake."""
        self._shutdown()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def state(self) -> State:
        return self._conn.state

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: HeadersLike | None = None,
    additional_headers: HeadersLike | None = None,
    ssl: _ssl.SSLContext | None = None,
    open_timeout: float | None = 10.0,
    source_address: tuple[str, int] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_frame_size: int | None = None,
    max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    close_timeout: float = 10.0,
    compression: str | DeflateOptions | None = None,
) -> ClientConnection:
    """Open a connection and run the opening handshake; return the open connection.

    `headers` are extra request headers: a dict or a list of (name, value) pairs
    (`additional_headers` is the same, under the `websockets` library's name, as in
    `fastws.connect`).
    `compression="deflate"` (or a DeflateOptions) offers permessage-deflate (RFC 7692); the
    connection is compressed if the server accepts (`ws.compressed`).

    Raises InvalidURI for a URL that is not ws:// or wss://, OSError when TCP fails (refused,
    unreachable, timeout), InvalidStatus when the server refuses the upgrade
    (`exc.response.status` holds its HTTP status) and InvalidHandshake when it answers wrongly.
    """
    if headers is not None and additional_headers is not None:
        raise TypeError("pass headers or additional_headers, not both")
    uri = parse_uri(url)
    handshake = ClientHandshake(
        uri,
        subprotocols=subprotocols,
        headers=headers if headers is not None else additional_headers,
        compression=compression_options(compression),
    )
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    sock = socket.create_connection((uri.host, uri.port), open_timeout, source_address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if uri.secure:
            context = ssl or _ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=uri.host)
        sock.sendall(handshake.request)
        response = None
        while response is None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out during the opening handshake")
                sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                raise handshake.connection_lost()
            response = handshake.receive_data(data)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return ClientConnection(
        sock,
        subprotocol=handshake.subprotocol,
        response=response,
        leftover=handshake.leftover,
        max_message_size=max_message_size,
        max_frame_size=max_frame_size,
        max_fragments=max_fragments,
        close_timeout=close_timeout,
        deflate=handshake.deflate,
    )
