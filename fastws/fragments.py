"""One message in several frames, from the I/O layer: the part of `WebSocket` that sends
a fragmented message (`send_fragments`) and keeps the frames of other messages (broadcasts)
from landing between its fragments (RFC 6455 5.4: "the fragments of one message MUST NOT be
interleaved between the fragments of another message").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .exceptions import ConnectionClosed
from .exceptions import closed as _closed
from .payload import as_payload as _as_payload
from .protocol.connection import Connection, State
from .protocol.frames import CloseCode, Opcode
from .stats.counters import MESSAGES_OUT
from .stats.counters import values as _stats

if TYPE_CHECKING:
    from .outbox import Frame, Outbox

__all__ = ["Fragmenting"]


async def _aiterate(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class Fragmenting(asyncio.BufferedProtocol):
    """Fragmented sends; mixed into `WebSocket`, whose slots hold the state."""

    __slots__ = ()

    # The WebSocket's attributes this part uses (declared for type checkers).
    _conn: Connection
    _transport: asyncio.Transport | None
    _out: Outbox
    _writing_paused: bool
    close_code: int | None
    close_reason: str | None

    if TYPE_CHECKING:

        def _write_data(self, frame: Frame) -> None: ...

        async def _wait_drain(self) -> None: ...

        def fail(self, code: int, reason: str) -> None: ...

    async def send_fragments(self, fragments: Iterable[Any] | AsyncIterable[Any]) -> None:
        """Send one message as several frames, from an (async) iterable of str or bytes.

        Each fragment is sent as soon as the next one is known (the last carries FIN). If the
        iterable fails half-way, the message cannot be completed: the connection is closed
        with 1011.
        """
        opcode = 0
        pending: Any = None
        sent = 0
        out = self._out
        try:
            async for item in _aiterate(fragments):
                kind, payload = _as_payload(item)
                if not opcode:
                    opcode = kind
                elif kind != opcode:
                    raise TypeError("all fragments of a message must be of the same type")
                if pending is not None:
                    if not sent:
                        out.deferred = []  # broadcasts wait for the last fragment
                    await self._send_frame(opcode if not sent else Opcode.CONT, pending, False)
                    sent += 1
                pending = payload
            if pending is None:
                raise ValueError("a message needs at least one fragment")
            await self._send_frame(opcode if not sent else Opcode.CONT, pending, True)
        except ConnectionClosed:
            raise
        except BaseException:
            if sent:
                self.fail(CloseCode.INTERNAL_ERROR, "incomplete fragmented message")
            raise
        finally:
            held = out.deferred
            out.deferred = None
            if held:
                self._send_deferred(held)

    def _send_deferred(self, held: list[tuple[int, Any]]) -> None:
        """The broadcast messages held back while a fragmented message was being sent."""
        conn = self._conn
        for opcode, payload in held:
            if self._transport is None or conn.state is not State.OPEN:
                return
            self._write_data(conn.send_data(opcode, payload))  # counted by broadcast()

    async def _send_frame(self, opcode: int, payload: Any, fin: bool) -> None:
        transport = self._transport
        conn = self._conn
        if (
            transport is None
            or (conn.state is not State.OPEN and conn.failing is None)
            or transport.is_closing()
        ):
            raise _closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        if self._conn.client:
            self._conn.mask_buffer_free = self._out.empty
        _stats[MESSAGES_OUT] += fin
        self._write_data(self._conn.send_data(opcode, payload, fin))
        if self._writing_paused:
            await self._wait_drain()
