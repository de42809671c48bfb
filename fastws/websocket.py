"""The WebSocket object applications use, on top of asyncio's BufferedProtocol.

Server and client connections share everything after the opening handshake, which is what
lives here: receiving into a shared buffer (or straight into a large payload's destination),
dispatching the protocol core's events without a task per message, and the application's
receive and send calls. Parts of the class live in their own modules, mixed in: backpressure
both ways (`flow`), keepalive pings (`keepalive`), the closing handshake with its timeout
(`closing`) and fragmented sends (`fragments`).

Backpressure: `send()` waits while the transport holds more than `write_limit` bytes; reading
pauses while more than `max_queue` messages wait for the application.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import socket
import sys
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from .assembler import UNBOUNDED, RegionAssembler
from .closing import Closing
from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .exceptions import closed as _closed
from .flow import FlowControl
from .fragments import Fragmenting
from .keepalive import Keepalive, wheel
from .message import Message
from .outbox import Frame, Outbox, flusher
from .payload import as_payload as _as_payload
from .protocol.connection import (
    SLICE_FRAMES,
    Chunk,
    Connection,
    Pong,
    State,
)
from .protocol.frames import SMALL_HEADERS as _SMALL_HEADERS
from .protocol.frames import CloseCode, Opcode
from .stats.counters import BYTES_IN, ERRORS, MESSAGES_IN, MESSAGES_OUT
from .stats.counters import BYTES_OUT as _BYTES_OUT
from .stats.counters import values as _stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .listener import Listener
    from .protocol.handshake import Request

__all__ = ["ConnectionClosed", "ConnectionClosedError", "ConnectionClosedOK", "WebSocket"]

# Plain ints and the enum member as module constants: cheaper lookups on the per-message path.
_BINARY = int(Opcode.BINARY)
_TEXT = int(Opcode.TEXT)
_OPEN = State.OPEN
_Future = asyncio.Future  # what poll_message() returns to wait with (uvloop's too)
_CLOSED = State.CLOSED

logger = logging.getLogger("fastws")

# One receive buffer per event loop, shared by its connections: a read is parsed before the
# next one starts, and only an incomplete frame header outlives it, so an idle connection
# holds no buffer of its own.
RECEIVE_BUFFER_SIZE = 256 * 1024
_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def receive_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    view = _buffers.get(loop)
    if view is None:
        view = _buffers[loop] = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
    return view


_NO_QUEUE: tuple[()] = ()

# While a large payload arrives straight into its buffer, the kernel wakes the connection
# only once this much of it (at most half of what the frame still lacks) is queued
# (SO_RCVLOWAT), instead of every few 64 KiB segments: fewer wake-ups and reads, each a pass
# of Python, per message. Below READ_AHEAD_MIN it is not worth a system call.
READ_AHEAD = 1 << 20
READ_AHEAD_MIN = 64 << 10
_READ_AHEAD_OK = sys.platform.startswith("linux")


class WebSocket(FlowControl, Keepalive, Closing, Fragmenting):
    """An open WebSocket connection: `recv`/`send`/`ping`/`close`, and `async for`."""

    # Slots: ~35 attributes are past CPython's key-sharing limit for instance dicts, so each
    # connection would carry a ~1.6 KB dict. "__dict__" keeps arbitrary attributes possible
    # (ws.user = ...): that dict is only created when an application sets one.
    __slots__ = (
        "__dict__",
        "_close_timeout",
        "_close_timer",
        "_conn",
        "_direct",
        "_drain_waiter",
        "_failure_grace",
        "_flusher",
        "_holding",
        "_ka_awaiting",
        "_listener",
        "_loop",
        "_lost",
        "_max_queue",
        "_message_timeout",
        "_open",
        "_out",
        "_partial",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_queue",
        "_rbuf",
        "_read_ahead",
        "_reading_paused",
        "_stall_size",
        "_stall_timer",
        "_transport",
        "_waiter",
        "_write_limit",
        "_write_timeout",
        "_writing_paused",
        "close_code",
        "close_reason",
        "keepalive_bucket",
        "remote_address",
        "request",
        "subprotocol",
    )
    # Set by the side that made the connection before it is open.
    request: Request | None
    subprotocol: str | None
    remote_address: Any

    def __init__(
        self,
        *,
        max_message_size: int,
        max_frame_size: int | None,
        max_fragments: int,
        max_queue: int,
        write_limit: int,
        close_timeout: float,
        ping_interval: float | None,
        ping_timeout: float | None,
        client: bool,
        write_timeout: float | None = None,
        assembler: RegionAssembler | None = None,
        message_timeout: float | None = None,
        failure_grace: float = 1.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.request = None
        self.subprotocol = None
        self.remote_address = None
        self._conn = Connection(
            client=client,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            max_fragments=max_fragments,
            assembler=UNBOUNDED if assembler is None else assembler,
        )
        self._conn.slice_frames = SLICE_FRAMES  # other connections of the loop get their turn
        # A peer that breaks the protocol right after complete messages: those messages are
        # delivered and may be answered before our Close frame, for up to failure_grace.
        self._conn.defer_failure = True
        self._failure_grace = failure_grace
        self._max_queue = max_queue
        self._write_limit = write_limit
        self._close_timeout = close_timeout
        self._ping_interval = ping_interval or None
        self._ping_timeout = ping_timeout or None
        self._write_timeout = write_timeout or None
        self._message_timeout = message_timeout or None
        # The partly received message seen at the last keepalive tick: (its number in
        # Connection.begun, loop time first seen); see _check_message.
        self._partial: tuple[int, float] | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_size = 0  # outgoing bytes buffered when the stall timer was armed
        self._transport: asyncio.Transport | None = None
        # What this connection writes, in order (made with the transport, connection_made).
        self._out: Outbox = None  # type: ignore[assignment]  # set before any write
        self._flusher = flusher(self._loop)
        # A callback-style handler (see listener.Listener) gets each message from
        # buffer_updated; None: a coroutine handler reads them with recv() / async for.
        # Typed Any: a Listener's callbacks take the server's connection (a subclass).
        self._listener: Any = None
        # While a read's messages go to the listener, its answers are held and leave in one
        # write when the read is done.
        self._holding = False
        self._rbuf = receive_buffer(self._loop)
        self._direct = False  # the last get_buffer() handed out a payload destination
        self._read_ahead = 0  # the socket's SO_RCVLOWAT; 0: not used (see _set_read_ahead)
        self._open = False  # the opening handshake is done
        # Received messages not yet read; an empty deque costs ~600 B, so a connection with
        # nothing waiting holds the shared empty tuple instead (see _dispatch and _next).
        self._queue: deque[str | bytes | Message | Chunk] = _NO_QUEUE  # type: ignore[assignment]
        self._waiter: asyncio.Future[Any] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Pings waiting for their pong; made with the first ping (an idle connection that is
        # never pinged does not carry an empty dict).
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        self.keepalive_bucket: set[Any] | None = None  # our bucket in the loop's KeepaliveWheel
        self._ka_awaiting: set[Any] | None = None  # a keepalive ping in flight (keepalive.py)
        self._close_timer: asyncio.TimerHandle | None = None
        # Made when someone waits for the end (close(), wait_closed()): an idle connection
        # does not carry a Future of its own.
        self._lost: asyncio.Future[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None

    # -- asyncio.BufferedProtocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._out = Outbox(transport, self._flusher)
        transport.set_write_buffer_limits(high=self._write_limit)
        self.remote_address = transport.get_extra_info("peername")
        # A plain TCP socket (under TLS the kernel counts encrypted bytes, some of which the
        # TLS layer may hold already: waiting for a count could wait forever).
        if _READ_AHEAD_OK and transport.get_extra_info("sslcontext") is None:
            self._read_ahead = 1

    def get_buffer(self, sizehint: int) -> memoryview:
        conn = self._conn
        if conn.target is not None:  # a large binary message is being received
            target = conn.payload_target()
            if target is not None:
                self._direct = True
                return target
        self._direct = False
        return self._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        if not self._open:
            self._handshake_data(self._rbuf[:nbytes])
            return
        conn = self._conn
        _stats[BYTES_IN] += nbytes
        if self._direct:
            conn.payload_written(nbytes)
        else:
            rbuf = self._rbuf
            listener = self._listener
            if listener is not None:  # a message in one read goes straight to the listener
                message = conn.receive_one(rbuf, nbytes)
                if message is not None:
                    _stats[MESSAGES_IN] += 1
                    try:
                        listener.on_message(
                            self, message if type(message) is str else Message(message)
                        )
                    except ConnectionClosed:
                        pass
                    except Exception as exc:
                        self._listener_failed(exc)
                    return
            else:
                waiter = self._waiter
                if waiter is not None and not self._queue and not waiter.done():
                    # A coroutine waits in recv() with nothing queued before: a message in
                    # one read goes straight to it too (no events list, no _dispatch).
                    message = conn.receive_one(rbuf, nbytes)
                    if message is not None:
                        _stats[MESSAGES_IN] += 1
                        self._waiter = None
                        waiter.set_result(message)
                        return
            # (After receive_one, which takes no pong: a data message is the common read.)
            if nbytes < 132 and rbuf[0] == 0x8A and self._pong_only(nbytes):
                return  # a lone pong, keepalive's (see Keepalive._pong_only)
            conn.receive_data(rbuf[:nbytes])
        if self._read_ahead and (conn.target is not None or self._read_ahead != 1):
            self._set_read_ahead()
        if conn.events or conn.out:
            self._dispatch()
        if conn.blocked:
            self._wait_for_memory()

    def _set_read_ahead(self) -> None:
        """SO_RCVLOWAT: READ_AHEAD bytes, never more than half of what the frame in progress
        still lacks, 1 between frames and near a frame's end. Half, not all: the peer may
        send nothing more before it gets an answer, and waiting for a whole 1 MiB message
        before reading any of it stopped its receiving overlapping its arrival (bench d,
        4 x 1 MiB: 13 % more server CPU per MB than no read-ahead; with half, level). e (16
        MiB messages): 17 % less server CPU per MB than no read-ahead."""
        want = min(self._conn.payload_room() // 2, READ_AHEAD)
        if want < READ_AHEAD_MIN:
            want = 1
        if want == self._read_ahead:
            return
        transport = self._transport
        sock: Any = transport.get_extra_info("socket") if transport is not None else None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
        except (OSError, AttributeError):  # not a socket that has it: never again
            self._read_ahead = 0
        else:
            self._read_ahead = want

    def eof_received(self) -> bool | None:
        if self._open:
            self._conn.receive_eof()
            self._dispatch()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL
            self.close_reason = ""
        if self.keepalive_bucket is not None:
            period = self._tick_period()
            assert period is not None
            wheel(self._loop, period).discard(self, self.keepalive_bucket)
            self.keepalive_bucket = None
        if self._ka_awaiting is not None:  # not held (nor failed) until its ping_timeout
            self._answered(self._ka_awaiting)
        for timer in (self._close_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._conn.abort()
        if self._out is not None:
            self._out.detach()
        closed = _closed(self.close_code, self.close_reason or "")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(closed)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(closed)
        if self._pings:
            for fut, _ in self._pings.values():
                if not fut.done():
                    fut.set_exception(closed)
            self._pings = None
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(None)
        self._transport = None
        listener = self._listener
        if listener is not None and self._open:
            self._listener = None
            try:
                listener.on_close(self, self.close_code, self.close_reason or "")
            except Exception:
                _stats[ERRORS] += 1
                logger.exception("on_close failed for the connection from %s", self._peer())

    # -- after the handshake ----------------------------------------------------------------

    def _handshake_data(self, data: memoryview) -> None:
        raise NotImplementedError  # the server and client sides do their own handshake

    def _opened(self, leftover: bytes, listener: Listener | None = None) -> None:
        """The handshake succeeded: frames from now on (`leftover` came with the handshake).

        With a `listener`, messages go to its callbacks from now on (`on_open` first).
        """
        self._open = True
        period = self._tick_period()
        if period is not None:
            self.keepalive_bucket = wheel(self._loop, period).add(self, period)
        if listener is not None:
            self._listener = listener
            try:
                self._listener.on_open(self)  # (Any: the server's connection type is a subclass)
            except Exception as exc:
                self._listener_failed(exc)
                return
        if leftover:
            self._conn.receive_data(leftover)
            self._dispatch()
            if self._conn.blocked:
                self._wait_for_memory()

    def _dispatch(self) -> None:
        """Hand the protocol core's events to the application, write what it queued."""
        conn = self._conn
        events = conn.events
        conn.events = []
        if self._listener is not None:
            self._call_listener(events)
            return
        queue = self._queue
        handed = False  # a message went to a waiting handler
        _stats[MESSAGES_IN] += len(events)  # minus the control events, below
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes or kind is Message or kind is Chunk:
                waiter = self._waiter
                if waiter is not None and not queue:
                    self._waiter = None
                    if not waiter.done():  # not cancelled
                        waiter.set_result(event)
                        handed = True
                        continue
                if len(queue) >= self._max_queue and conn.state is not _OPEN:
                    continue  # closing: nobody will read past a full queue, and we must read
                if queue is _NO_QUEUE:
                    queue = self._queue = deque()
                queue.append(event)  # type: ignore[arg-type]
            elif kind is Pong:
                _stats[MESSAGES_IN] -= 1
                self._pong(event.payload)  # type: ignore[union-attr]
            else:
                _stats[MESSAGES_IN] -= 1
                self._peer_closed(event)  # type: ignore[arg-type]
        if conn.out:
            self._write_control()
        if len(queue) >= self._max_queue and not self._reading_paused and conn.state is _OPEN:
            transport = self._transport
            if transport is not None:
                self._reading_paused = True
                transport.pause_reading()
        if conn.state is _CLOSED:
            if conn.failing is not None and (handed or queue) and self._transport is not None:
                # The handler answers what came before the violation; _next() or the grace
                # timer sends our Close frame after its answers.
                self._close_timer = self._loop.call_later(self._failure_grace, self._finish_failure)
            else:
                self._closed_by_protocol(events)

    def _call_listener(self, events: list[Any]) -> None:
        """`_dispatch` for a callback-style handler: each message to `on_message` now.

        The answers to the messages of one read leave in one write, after them; frames the
        protocol queued itself (pongs, a Close reply) go first: they answer frames that came
        before the messages completed.
        """
        listener = self._listener
        assert listener is not None
        conn = self._conn
        if conn.out:  # pongs first: their pings came before the messages completed (5.6)
            self._write_control()
        self._holding = len(events) > 1
        _stats[MESSAGES_IN] += len(events)  # minus the control events, below
        try:
            for event in events:
                kind = type(event)
                if kind is str or kind is Message:
                    listener.on_message(self, event)
                elif kind is bytes:
                    listener.on_message(self, Message(event))
                elif kind is Pong:
                    _stats[MESSAGES_IN] -= 1
                    self._pong(event.payload)
                else:
                    _stats[MESSAGES_IN] -= 1
                    self._peer_closed(event)
        except ConnectionClosed:
            pass  # a send after the peer's Close, in the same read: nothing to answer
        except Exception as exc:
            self._holding = False
            self._listener_failed(exc)
            return
        self._holding = False
        if self._out.size:
            self._out.flush()
        if conn.state is _CLOSED:
            self._closed_by_protocol(events)

    def _listener_failed(self, exc: Exception) -> None:
        """A listener callback raised: log it, close 1011 (as for a failed handler)."""
        _stats[ERRORS] += 1
        logger.error("listener failed for the connection from %s", self._peer(), exc_info=exc)
        self._begin_close(CloseCode.INTERNAL_ERROR, "")

    def _write_control(self) -> None:
        """Write the frames the protocol core queued itself, after everything before them."""
        out = self._out
        for frame in self._conn.data_to_send():
            out.add(frame)
        out.flush()

    def _peer(self) -> str:
        addr = self.remote_address
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr)

    # -- application API ------------------------------------------------------------------

    def use_assembler(self, assembler: RegionAssembler) -> None:
        """Assemble the binary messages received from now on with `assembler` (fastws.asgi: a
        `BytesAssembler` where the application gets `bytes`)."""
        self._conn.assembler = assembler

    async def recv(self) -> str | bytes:
        """The next message: `str` for text, `bytes` for binary.

        Raises ConnectionClosedOK / ConnectionClosedError once the connection is closed and
        every message received before has been read. A large binary message is copied into
        its `bytes`; `recv_message()` hands it over without a copy.
        """
        # Awaiting the waiter itself, not a helper coroutine: every frame between the task
        # and the Future is resumed and suspended again per message, and is memory an idle
        # connection keeps.
        message = self.poll_message()
        if type(message) is _Future:
            message = await message
        if isinstance(message, Chunk):
            message = await self.skip_stream(message)
        if isinstance(message, Message):
            with message:
                return message.tobytes()
        return message  # type: ignore[return-value]

    async def recv_message(self) -> str | Message:
        """The next message: `str` for text, a `Message` for binary (no copy; see Message)."""
        message = self.poll_message()
        if type(message) is _Future:
            message = await message
        if isinstance(message, Chunk):
            message = await self.skip_stream(message)
        if type(message) is bytes:
            return Message(message)
        return message  # type: ignore[return-value]

    async def next_message(self) -> str | bytes | Message:
        """The next message as it was received, for adapters that convert it themselves
        (fastws.asgi): `str`, `bytes` for a small binary message, a `Message` for a large one."""
        message = self.poll_message()
        if type(message) is _Future:
            message = await message
        if isinstance(message, Chunk):
            return await self.skip_stream(message)
        return message  # type: ignore[return-value]

    async def messages(self) -> AsyncIterator[str | Message]:
        """`async for message in ws.messages()`: like `async for`, with `recv_message()`."""
        while True:
            try:
                message = self.poll_message()
                if type(message) is _Future:
                    message = await message
                if isinstance(message, Chunk):
                    message = await self.skip_stream(message)
            except ConnectionClosedOK:
                return
            yield Message(message) if type(message) is bytes else message  # type: ignore[misc]

    async def stream(self) -> AsyncIterator[str | Message]:
        """The next message piece by piece, as it arrives: `async for piece in ws.stream()`.

        A binary message comes as `Message`s of up to 1 MiB each, in order, each written in
        place by the kernel (zero copy; release each when done, or let it go), so a 2 GiB
        upload can go to a file without being held whole. Memory stays bounded: at most
        max_queue pieces wait before reading pauses. Text, compressed messages and a message
        that had started arriving before the call come as one piece. Leaving the loop early
        discards the rest of a streamed message.
        """
        conn = self._conn
        if not self._queue:
            conn.streaming = True
        try:
            while True:
                item = await self._next()
                if type(item) is Chunk:
                    yield cast(Message, item.data)  # our assembler's pieces (RegionAssembler)
                    if item.last:
                        return
                else:
                    yield Message(item) if type(item) is bytes else item  # type: ignore[misc]
                    return
        finally:
            conn.streaming = False

    async def skip_stream(self, item: Chunk) -> str | bytes | Message:
        """For a `Chunk` from poll_message() (a stream abandoned half-way): drop what is left
        of it; return the next whole message."""
        while True:
            while True:  # the pieces of one message are consecutive in the queue
                cast(Message, item.data).release()
                if item.last:
                    break
                item = cast(Chunk, await self._next())
            message = await self._next()
            if not isinstance(message, Chunk):
                return message
            item = message

    async def _next(self) -> str | bytes | Message | Chunk:
        message = self.poll_message()
        if type(message) is _Future:
            return await message
        return message  # type: ignore[return-value]

    def poll_message(self) -> str | bytes | Message | Chunk | asyncio.Future[Any]:
        """The next item as received if one is queued, else a Future it will complete.

        For code on the per-message path (recv(), fastws.asgi) that awaits the Future
        itself: no coroutine frame between the waiting task and the Future. Items are `str`,
        `bytes`, `Message`, or a `Chunk` of a stream abandoned half-way (skip_stream()
        drops it).
        Raises ConnectionClosed once the connection is closed and every message was read.
        A Future whose awaiting task was cancelled is simply replaced by the next call.
        """
        queue = self._queue
        if queue:
            message = queue.popleft()
            if not queue:
                self._queue = _NO_QUEUE  # type: ignore[assignment]
            if self._reading_paused and len(queue) <= self._max_queue >> 1:
                self._resume_reading()
            return message
        if self._conn.state is _CLOSED or self._transport is None:
            if self._conn.failing is not None:  # the handler has read all it may answer
                self._finish_failure()
            raise _closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            raise RuntimeError("another coroutine is already waiting for the next message")
        if self._listener is not None:
            raise RuntimeError("messages go to this connection's listener, not to recv()")
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        """Iterate over messages until the connection closes; an error close raises."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(
        self, message: str | bytes | bytearray | memoryview | Any, *, release: bool = False
    ) -> None:
        """Send a text (`str`) or binary (any contiguous bytes-like object) message.

        Binary payloads above a few KiB are written without a copy: the buffer must not change
        until it has been sent, that is until `drain()` returns. `release=True` with a
        received `Message` releases it as soon as it is handed to the transport (an echo or a
        relay): its memory is reused once the transport has written it, without waiting for
        this coroutine to resume.
        """
        self.send_nowait(message, release=release)
        if self._writing_paused:
            await self._wait_drain()

    def send_nowait(self, message: Any, *, release: bool = False) -> None:
        """`send()` without waiting: the message (str, or bytes-like as for `send()`) is queued
        for the transport at once.

        For callback-style handlers (see `Listener`) and code that may not await. It never
        blocks: while the peer does not read (`writing_paused`), the server stops reading from
        it too, so an echo or a request/response handler stays bounded; code that sends
        unprompted should check `writing_paused`, or `await drain()`.
        """
        # The common types first, inline (as_payload has the general rule and the errors).
        kind = type(message)
        if kind is bytes:
            opcode, payload = _BINARY, message
        elif kind is Message and type(buffer := message.buffer) is bytes:  # a small one received
            opcode, payload = _BINARY, buffer
        elif kind is str:
            opcode, payload = _TEXT, message.encode()
        else:
            opcode, payload = _as_payload(message)
        transport = self._transport
        conn = self._conn
        # is_closing(): a write already failed (peer reset); connection_lost is only queued, and
        # a handler that never has to wait would otherwise keep sending into the void.
        # `failing`: answers to messages that came before a protocol violation may still go.
        if (
            transport is None
            or (conn.state is not _OPEN and conn.failing is None)
            or transport.is_closing()
        ):
            raise _closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        _stats[MESSAGES_OUT] += 1
        if len(payload) < 126 and conn.deflate is None and not conn.client:
            frame: Frame = _SMALL_HEADERS[opcode][len(payload)] + payload  # send_data's first case
        else:
            if conn.client:
                conn.mask_buffer_free = self._out.empty
            frame = conn.send_data(opcode, payload)
        # _write_data's first two cases and Outbox.write's first, inline: this is the
        # per-message path (nothing held in the outbox: `size` is 0).
        out = self._out
        if self._holding:
            out.add(frame)
        elif self._queue:
            self._write_data(frame)
        elif out.size or type(frame) is not bytes:
            out.write(frame)
        else:
            out.counts[_BYTES_OUT] += len(frame)
            transport.write(frame)
        if release and kind is Message:
            message.release()  # the transport's hold keeps the pages until it has written them

    def _write_data(self, frame: Frame) -> None:
        """Write a data frame, batching when more answers are coming.

        While a callback handler answers the messages of one read, or a coroutine handler
        still has received messages queued (pipelined requests), the answers are held and
        leave together in one writev after the last one (at the latest when the loop
        iteration ends, or at write_limit): one syscall per batch, not one per message. A
        lone message is written at once.
        """
        out = self._out
        if self._holding:
            out.add(frame)
        elif not self._queue:
            out.write(frame)
        else:
            out.add(frame)
            if out.size >= self._write_limit:
                out.flush()
            else:
                out.flush_soon()

    async def send_file(
        self, path: str | os.PathLike[str], offset: int = 0, count: int | None = None
    ) -> None:
        """Send `count` bytes of a file from `offset` as one binary message, without a copy.

        The file is mapped read-only and its pages go to the socket from the page cache; the
        mapping lives until the transport has written them. The file must not shrink meanwhile.
        """
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if not 0 <= offset <= size:
                raise ValueError(f"offset {offset} outside a file of {size} bytes")
            end = size if count is None else min(size, offset + count)
            if end == offset:
                await self.send(b"")
                return
            mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        await self.send(memoryview(mapping)[offset:end])

    @property
    def closed(self) -> bool:
        return self._transport is None or self._conn.state is _CLOSED

    @property
    def writing_paused(self) -> bool:
        """The peer is not reading fast enough: more than write_limit bytes wait for it."""
        return self._writing_paused

    @property
    def write_limit(self) -> int:
        """Bytes the transport may hold before `send()` waits (and a server stops reading)."""
        return self._write_limit

    @property
    def peer(self) -> str:
        """The remote address as host:port, for log lines."""
        return self._peer()

    @property
    def protocol(self) -> Connection:
        """The sans-I/O protocol state of this connection (framing, deflate, state)."""
        return self._conn

    @property
    def outbox(self) -> Outbox:
        """What this connection has queued for writing (see fastws.outbox)."""
        return self._out

    def uncount(self) -> None:
        """Leave this connection's frames out of the traffic counters (bytes_out) from now
        on: a connection that watches the server (the dashboard's feed) is not part of what
        it shows. Call it once open, before sending: the Outbox is replaced."""
        assert self._transport is not None
        self._out = Outbox(self._transport, self._flusher, counted=False)

    def stop_keepalive(self) -> None:
        """No keepalive pings and no message_timeout for this connection: for a peer that
        needs neither (write_timeout still ends one that stops reading). Call it before
        the connection opens: the keepalive clock is wound when it does."""
        self._ping_interval = self._message_timeout = None

    @property
    def state(self) -> State:
        return self._conn.state
