"""How a connection ends, in the I/O layer: the part of `WebSocket` that runs the closing
handshake (RFC 6455 7) over the transport.

`close()` sends our Close frame and waits for the peer's, at most close_timeout; `fail()`
closes at once; `abort()` drops TCP. When the peer broke the protocol, the answers to the
messages that came before the violation go out before our Close frame (`_finish_failure`),
and TCP lingers after it so that the peer reads it instead of a reset (`_linger`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .exceptions import closed as _closed
from .protocol.connection import Close, Connection, Failure, State
from .protocol.frames import CloseCode
from .stats.counters import ERRORS
from .stats.counters import values as _stats

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["Closing"]

logger = logging.getLogger("fastws")


class Closing(asyncio.BufferedProtocol):
    """The closing handshake; mixed into `WebSocket`, whose slots hold the state."""

    __slots__ = ()

    # The WebSocket's attributes this part uses (declared for type checkers).
    _conn: Connection
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _out: Outbox
    _close_timeout: float
    _close_timer: asyncio.TimerHandle | None
    _lost: asyncio.Future[None] | None
    _waiter: asyncio.Future[Any] | None
    _queue: Any
    _reading_paused: bool
    close_code: int | None
    close_reason: str | None

    if TYPE_CHECKING:

        def _peer(self) -> str: ...

        def _write_control(self) -> None: ...

        def _resume_reading(self) -> None: ...

    def _finish_failure(self) -> None:
        """Our Close frame for a failed connection, after the answers to the messages that
        came before the violation (RFC 6455 7.1.7), then close TCP."""
        conn = self._conn
        if conn.failing is None:
            return
        if self._close_timer is not None:  # the grace timer (this call, or cut short)
            self._close_timer.cancel()
            self._close_timer = None
        conn.close_failed()
        self._write_control()
        transport = self._transport
        if transport is not None:
            if transport.can_write_eof():
                self._linger(transport)
            else:
                transport.close()

    def _closed_by_protocol(self, events: list[Any]) -> None:
        """The core is CLOSED (closing handshake done, or the connection failed): close TCP."""
        if self._conn.failing is not None:
            self._finish_failure()
            return
        transport = self._transport
        if transport is None:
            return
        if events and type(events[-1]) is Failure and transport.can_write_eof():
            self._linger(transport)
        else:
            transport.close()  # our side of TCP: 7.1.1, the server closes first

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after failing the connection, without losing our Close frame to a reset.

        The peer may still be sending (the rest of a message too big, say). Closing now
        with its bytes unread would make our kernel answer with a reset, and the peer would
        drop our Close frame unread (browsers then report 1006). So: send FIN after the Close
        frame, read and discard until the peer closes too, at most close_timeout.
        """
        transport.write_eof()
        transport.resume_reading()
        if self._close_timer is None:
            self._close_timer = self._loop.call_later(self._close_timeout, transport.abort)

    def _peer_closed(self, event: Close) -> None:
        self.close_code = event.code
        self.close_reason = event.reason
        if type(event) is Failure:
            error = self._conn.error
            if error is not None:  # a bug of ours (or no memory), not the peer's doing
                _stats[ERRORS] += 1
                logger.error(
                    "connection from %s failed: %d %s",
                    self._peer(),
                    event.code,
                    event.reason,
                    exc_info=error,
                )
            else:
                logger.info(
                    "connection from %s failed: %d %s", self._peer(), event.code, event.reason
                )
        waiter = self._waiter
        if waiter is not None and not waiter.done() and not self._queue:
            self._waiter = None
            waiter.set_exception(_closed(event.code, event.reason))

    def fail(self, code: int, reason: str) -> None:
        """Close with `code` now, without waiting for the peer's answer.

        Our Close frame follows what is already queued; TCP is closed once it is written,
        and dropped if the peer has not read it within close_timeout (a peer too slow to
        read, say).
        """
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        transport = self._transport
        if transport is None:
            return
        conn = self._conn
        if conn.failing is not None:
            self._finish_failure()
            return
        if conn.state is State.OPEN:
            self._out.write(conn.send_close(code, reason))
        conn.abort()
        transport.close()
        if self._close_timer is None:
            self._close_timer = self._loop.call_later(self._close_timeout, transport.abort)

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (the peer sees 1006)."""
        transport = self._transport
        if transport is not None:
            self._conn.abort()
            transport.abort()

    def close_nowait(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake without waiting for it (`close()` waits): for
        callback-style handlers. The connection is dropped after close_timeout if the peer
        does not answer."""
        self._begin_close(code, reason)

    def _begin_close(self, code: int, reason: str, timer: bool = True) -> None:
        """Send Close; without `timer` the caller bounds the wait for the peer's answer."""
        if self._conn.failing is not None:  # the peer broke the protocol: its Close code
            self._finish_failure()
            return
        transport = self._transport
        if transport is not None and self._conn.state is State.OPEN:
            self._out.write(self._conn.send_close(code, reason))
            if timer:
                self._close_timer = self._loop.call_later(self._close_timeout, self._close_expired)
            if self._reading_paused:  # the peer's Close may be behind messages nobody reads
                self._resume_reading()
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Run the closing handshake: send Close, wait for the peer's, then close TCP.

        Waits at most `close_timeout` for the peer, then drops the connection.
        """
        self._begin_close(code, reason)
        await self.wait_closed()

    def _close_expired(self) -> None:
        if self._transport is not None:
            logger.info("connection from %s: no close reply, dropping it", self._peer())
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if self._transport is None and self._lost is None:
            return  # closed already (or never opened)
        lost = self._lost
        if lost is None:
            lost = self._lost = self._loop.create_future()
        await asyncio.shield(lost)
