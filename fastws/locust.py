"""A locust `User` for WebSocket servers, on the blocking client of `fastws.sync`.

    from locust import task
    from fastws.locust import WebSocketUser

    class Echo(WebSocketUser):
        @task
        def echo(self) -> None:
            self.request("hello")   # reported as WS "echo": round trip time, response length

Run with `locust -f this_file.py --host ws://127.0.0.1:8000/`. Locust ships no plain
WebSocket user, and asyncio clients cannot run inside its gevent greenlets; this user opens
one connection per locust user (in `on_start`) and reports to locust's statistics:

- `WS connect`: the TCP connect plus opening handshake. Refused connections, timeouts and
  refused upgrades (`HTTP 403`...) are failures whose message says which.
- `WS <name>` for `request()`: the round trip of a message carrying an id, matched to the
  response carrying the same id, so responses may come back in any order.
- `WS ping`: a ping's round trip to its pong.
- `WS recv`: messages the server sent on its own (no pending id), with their length.
- `WS close`: the server closed the connection (or it dropped) while the user was running —
  a failure unless the code is in `expected_close_codes`; requests still waiting fail too.

Importing this module imports locust, which monkey-patches the process with gevent: import
it only in locustfiles, never in a process that runs asyncio.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import gevent
import gevent.event
from locust import User, events

from .protocol.connection import State
from .protocol.handshake import InvalidHandshake
from .sync import ClientConnection, ConnectionClosed, connect

__all__ = ["WebSocketUser", "parse_source_addresses"]

REQUEST_TYPE = "WS"
SOURCE_ADDRESSES_ENV = "FASTWS_LOCUST_SOURCE_ADDRESSES"
_ID = struct.Struct(">Q")
_user_counter = itertools.count()


def parse_source_addresses(spec: str) -> list[str]:
    """`"127.0.0.2-127.0.0.9"`, `"127.0.0.2,127.0.0.3"` or a mix: the addresses, in order.

    One source address reaches at most ~28k ephemeral ports towards one server port, so
    tens of thousands of connections need several (all of 127.0.0.0/8 is loopback).
    """
    addresses: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        first, sep, last = item.partition("-")
        if not sep:
            addresses.append(first)
            continue
        prefix, _, start = first.rpartition(".")
        end = last.rpartition(".")[2]
        addresses += [f"{prefix}.{i}" for i in range(int(start), int(end) + 1)]
    return addresses


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    """Refresh the gevent loop's cached clock before locust arms its `--run-time` timer.

    libev computes timers from the time of the loop's last iteration; when importing the
    locustfiles (numpy, fastws...) takes longer than `--run-time` on a busy machine, the
    timer would otherwise fire at once and end the run before it started.
    """
    gevent.get_hub().loop.update_now()


class _Pending:
    __slots__ = ("done", "name", "response", "start")

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.perf_counter()
        self.response: str | bytes | BaseException | None = None
        self.done = gevent.event.Event()


class WebSocketUser(User):
    """One WebSocket connection per locust user; subclass it and add tasks.

    Class attributes configure the connection; `encode_request`/`decode_id` define how the
    request id travels in a message (override them for an application's own format).
    """

    abstract = True

    #: Appended to `--host` when the host has no path of its own.
    path: ClassVar[str] = "/"
    subprotocols: ClassVar[Sequence[str]] = ()
    headers: ClassVar[Sequence[tuple[str, str]]] = ()
    open_timeout: ClassVar[float] = 10.0
    #: A request whose response has not come back after this long is a failure.
    response_timeout: ClassVar[float] = 10.0
    close_timeout: ClassVar[float] = 5.0
    max_message_size: ClassVar[int] = 64 * 1024 * 1024
    #: Server-initiated close codes that are not failures.
    expected_close_codes: ClassVar[frozenset[int]] = frozenset({1000, 1001})
    #: After a failed connect, wait this long before the next task tries again.
    reconnect_delay: ClassVar[float] = 1.0
    #: "deflate" offers permessage-deflate (set per instance in on_start if it is an option).
    compression: str | None = None
    #: Local addresses to spread connections over; default from FASTWS_LOCUST_SOURCE_ADDRESSES.
    source_addresses: ClassVar[Sequence[str] | None] = None

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.ws: ClientConnection | None = None
        self._pending: dict[int, _Pending] = {}
        self._expired: set[int] = set()  # timed out: their late replies are dropped
        self._ids = itertools.count(1)
        self._reader: gevent.Greenlet | None = None
        self._stopping = False
        self._last_failure = 0.0
        self._number = next(_user_counter)

    # -- connection ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket URL: `--host` (http(s):// is read as ws(s)://) plus `path`."""
        host = self.host or "ws://127.0.0.1:8000"
        parts = urlsplit(host)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path if parts.path not in ("", "/") else self.path
        return urlunsplit((scheme, parts.netloc, path, parts.query, ""))

    def _source_address(self) -> tuple[str, int] | None:
        addresses = self.source_addresses
        if addresses is None:
            addresses = parse_source_addresses(os.environ.get(SOURCE_ADDRESSES_ENV, ""))
        if not addresses:
            return None
        runner = getattr(self.environment, "runner", None)
        offset = getattr(runner, "worker_index", 0) or 0
        return (addresses[(self._number + offset) % len(addresses)], 0)

    def on_start(self) -> None:
        self.connect()

    def on_stop(self) -> None:
        self.disconnect()

    def connect(self) -> bool:
        """Open the connection and report `WS connect`; False (reported as failure) if it failed."""
        self.disconnect()
        self._stopping = False
        start = time.perf_counter()
        exception: BaseException | None = None
        response_length = 0
        try:
            self.ws = connect(
                self.url,
                subprotocols=self.subprotocols,
                headers=self.headers,
                open_timeout=self.open_timeout,
                source_address=self._source_address(),
                max_message_size=self.max_message_size,
                close_timeout=self.close_timeout,
                compression=self.compression,
            )
        except InvalidHandshake as exc:
            exception = exc
        except OSError as exc:
            exception = ConnectionError(f"connect to {self.url} failed: {exc}")
        if exception is None:
            assert self.ws is not None
            self._reader = gevent.spawn(self._read_loop, self.ws)
        else:
            self._last_failure = time.monotonic()
        self._fire("connect", start, response_length, exception)
        return exception is None

    def ensure_connected(self) -> bool:
        """Connect if there is no open connection (waiting `reconnect_delay` after a failure)."""
        if self.ws is not None and self.ws.state is State.OPEN:
            return True
        wait = self._last_failure + self.reconnect_delay - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        return self.connect()

    def disconnect(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection normally; neither the close nor unanswered requests are
        reported (stopping a user interrupts them, the server did nothing wrong)."""
        ws, self.ws = self.ws, None
        if ws is None:
            return
        self._stopping = True
        ws.close(code, reason)
        if self._reader is not None:
            self._reader.join(self.close_timeout)
            self._reader.kill(block=False)
            self._reader = None
        # Requests still waiting were interrupted by us (the user is stopping): not failures.
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.response = ConnectionClosed(ws.close_code or 1006, ws.close_reason or "")
            entry.done.set()

    # -- messages -----------------------------------------------------------------------------

    def encode_request(self, request_id: int, message: str | bytes) -> str | bytes:
        """Carry `request_id` in the message: text `#<id>|...`, binary `#` + 8-byte id + ..."""
        if isinstance(message, str):
            return f"#{request_id}|{message}"
        return b"#" + _ID.pack(request_id) + message

    def decode_id(self, message: str | bytes) -> int | None:
        """The request id a response carries, or None for a message of the server's own."""
        if isinstance(message, str):
            if message[:1] == "#":
                end = message.find("|", 1, 22)
                if end > 1 and message[1:end].isdigit():
                    return int(message[1:end])
            return None
        if message[:1] == b"#" and len(message) >= 9:
            return int(_ID.unpack_from(message, 1)[0])
        return None

    def request(
        self, message: str | bytes, name: str = "echo", *, wait: bool = True
    ) -> str | bytes | None:
        """Send `message` with a fresh id; report the round trip when the reply comes back.

        With `wait`, block until the reply (or `response_timeout`) and return it; without,
        return at once and let the reader report the reply whenever it arrives.
        """
        if not self.ensure_connected():
            return None
        ws = self.ws
        assert ws is not None
        request_id = next(self._ids)
        payload = self.encode_request(request_id, message)
        pending = self._pending[request_id] = _Pending(name)
        try:
            ws.send(payload)
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            self._fire(name, pending.start, 0, exc)
            return None
        if not wait:
            return None
        if not pending.done.wait(self.response_timeout):
            if self._pending.pop(request_id, None) is not None:
                self._expired.add(request_id)
            self._fire(
                name,
                pending.start,
                0,
                TimeoutError(f"no response within {self.response_timeout} s"),
            )
            return None
        response = pending.response
        return None if isinstance(response, BaseException) or response is None else response

    def send(self, message: str | bytes) -> None:
        """Send a message without an id and without reporting it (fire and forget)."""
        if self.ensure_connected():
            assert self.ws is not None
            self.ws.send(message)

    def ping(self, name: str = "ping") -> float | None:
        """Ping the server and report the round trip to its pong; return it in seconds."""
        if not self.ensure_connected():
            return None
        assert self.ws is not None
        start = time.perf_counter()
        try:
            rtt = self.ws.ping(timeout=self.response_timeout)
        except (TimeoutError, ConnectionClosed) as exc:
            self._fire(name, start, 0, exc)
            return None
        self._fire(name, start, 0, None, rtt)
        return rtt

    def on_message(self, message: str | bytes) -> None:
        """A message from the server that answers no request: reported as `WS recv`."""
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name="recv",
            response_time=0,
            response_length=len(message),
            exception=None,
            context={},
        )

    # -- internals ----------------------------------------------------------------------------

    def _read_loop(self, ws: ClientConnection) -> None:
        """The connection's only reader: match replies to requests, hand the rest on."""
        while True:
            try:
                message = ws.recv()
            except ConnectionClosed as exc:
                if self._stopping:
                    return  # disconnect() is closing it; it settles what was pending
                if ws.closed_by_peer and exc.code not in self.expected_close_codes:
                    error = ConnectionError(
                        f"server closed the connection: {exc.code} {exc.reason}".rstrip()
                    )
                    self._fire("close", time.perf_counter(), 0, error)
                # Even a clean close from the server fails the requests it left unanswered;
                # the next task reconnects.
                self._fail_pending(exc)
                self._last_failure = time.monotonic()
                return
            request_id = self.decode_id(message)
            pending = self._pending.pop(request_id, None) if request_id is not None else None
            if pending is None:
                if request_id in self._expired:
                    self._expired.discard(request_id)  # already failed as a timeout
                else:
                    self.on_message(message)
                continue
            now = time.perf_counter()
            pending.response = message
            self._fire(pending.name, pending.start, len(message), None, now - pending.start)
            pending.done.set()

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.response = exc
            self._fire(entry.name, entry.start, 0, exc)
            entry.done.set()

    def _fire(
        self,
        name: str,
        start: float,
        length: int,
        exception: BaseException | None,
        elapsed: float | None = None,
    ) -> None:
        if elapsed is None:
            elapsed = time.perf_counter() - start
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=elapsed * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
