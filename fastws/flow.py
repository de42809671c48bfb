"""Flow control of a connection, both ways: the part of `WebSocket` that keeps a slow or
stalled peer, or a full memory budget, from making us buffer without bound.

Writing: `send()` waits (`drain`) while the transport holds more than write_limit bytes. The
peer's own frames may need answers too (a pong per ping), so a server also stops reading from
a peer that does not read; one that reads nothing at all for write_timeout is disconnected
with 1008. Reading: it pauses while max_queue messages wait for the application, and while
the protocol core holds bytes back (`Connection.blocked`: a sliced read, a region or memory
for a large message), until it can go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import TYPE_CHECKING, Any

from .exceptions import closed as _closed
from .protocol.connection import Blocked, Connection
from .protocol.frames import CloseCode

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["FlowControl", "retrieve"]

logger = logging.getLogger("fastws")

try:  # the kernel's count of unsent bytes on a socket (Linux: SIOCOUTQ == TIOCOUTQ)
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not on this platform
    _TIOCOUTQ = None


def retrieve(fut: asyncio.Future[Any]) -> None:
    """Read a future's exception so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


class FlowControl(asyncio.BufferedProtocol):
    """Backpressure both ways; mixed into `WebSocket`, whose slots hold the state."""

    __slots__ = ()

    # The WebSocket's attributes this part uses (declared for type checkers).
    _conn: Connection
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _out: Outbox
    _reading_paused: bool
    _writing_paused: bool
    _write_timeout: float | None
    _stall_timer: asyncio.TimerHandle | None
    _stall_size: int
    _drain_waiter: asyncio.Future[None] | None
    close_code: int | None
    close_reason: str | None

    if TYPE_CHECKING:

        def _peer(self) -> str: ...

        def _dispatch(self) -> None: ...

    def pause_writing(self) -> None:
        self._writing_paused = True
        transport = self._transport
        if transport is not None:
            # A server stops reading from a peer that does not read its answers. A client
            # must go on reading (up to max_queue): a server that does the same would
            # otherwise wait for it while it waits for the server, for ever.
            if not self._reading_paused and not self._conn.client:
                transport.pause_reading()
            if self._write_timeout is not None and self._stall_timer is None:
                # Measured once the write that paused us is complete (writelines may pause
                # between a frame's header and its payload).
                self._loop.call_soon(self._measure_stall)
                self._stall_timer = self._loop.call_later(self._write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not self._reading_paused and not self._conn.blocked and self._transport is not None:
            self._transport.resume_reading()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _measure_stall(self) -> None:
        self._stall_size = self._unsent()

    def _unsent(self) -> int:
        """Bytes written but not yet taken by the peer: ours plus the kernel's send queue (a
        large kernel queue drains while ours stays put, so ours alone hides a slow reader)."""
        transport = self._transport
        if transport is None:
            return 0
        unsent = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if _TIOCOUTQ is not None and sock is not None:
            with contextlib.suppress(OSError, ValueError):
                unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0" * 4))[0]
        return unsent

    def _write_stalled(self) -> None:
        """write_timeout passed with writing paused: close unless the peer read something."""
        self._stall_timer = None
        transport = self._transport
        if transport is None or not self._writing_paused:
            return
        size = self._unsent()
        if size < self._stall_size:  # slow but reading: check again later
            self._stall_size = size
            assert self._write_timeout is not None
            self._stall_timer = self._loop.call_later(self._write_timeout, self._write_stalled)
            return
        logger.info(
            "connection from %s: peer read nothing for %gs (%d bytes waiting), closing 1008",
            self._peer(),
            self._write_timeout,
            size,
        )
        if self.close_code is None:
            # 7.4.1: 1008 "indicates that an endpoint is terminating the connection because it
            # has received a message that violates its policy". Our Close frame could only
            # queue behind what the peer does not read: drop the connection instead.
            self.close_code, self.close_reason = CloseCode.POLICY_VIOLATION, "peer not reading"
        self._conn.abort()
        transport.abort()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its limit."""
        if self._writing_paused:
            await self._wait_drain()

    async def _wait_drain(self) -> None:
        if self._transport is None:
            raise _closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        waiter = self._drain_waiter
        if waiter is None or waiter.done():
            waiter = self._drain_waiter = self._loop.create_future()
            waiter.add_done_callback(retrieve)  # awaited through shield(): may be abandoned
        await asyncio.shield(waiter)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        # see pause_writing and _wait_for_memory
        if self._transport is not None and not self._writing_paused and not self._conn.blocked:
            self._transport.resume_reading()

    def _wait_for_memory(self) -> None:
        """The core holds bytes back (`blocked`): stop reading until it can go on. Either the
        rest of a read of many small frames, parsed from the next loop iteration on so other
        connections are served in between, or a new large message waiting for the worker's
        message budget."""
        transport = self._transport
        if transport is None:
            return
        if self._conn.blocked is not Blocked.MEMORY:  # SLICE or REGION: the next iteration
            transport.pause_reading()
            self._loop.call_soon(self._retry_memory)
            return
        transport.pause_reading()
        loop = self._loop

        def wake() -> None:  # Budget.free may run inside a finalizer: only schedule here
            loop.call_soon(self._retry_memory)

        self._conn.assembler.wait(wake)

    def _retry_memory(self) -> None:
        conn = self._conn
        transport = self._transport
        if transport is None or not conn.blocked:
            return
        if not conn.resume():
            self._wait_for_memory()
            return
        if conn.events or conn.out:
            self._dispatch()
        if conn.blocked:  # another slice to parse, or another large message to admit
            self._wait_for_memory()
        elif not self._reading_paused and not self._writing_paused and self._transport:
            self._transport.resume_reading()
