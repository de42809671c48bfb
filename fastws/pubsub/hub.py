"""Channels (rooms) in one worker: who subscribed to what, and delivery to them.

`ws.subscribe("room")` adds the connection to the room in its worker's hub; when the worker
gains its first subscriber on a room, the hub tells the broker (`Broker.subscribe`), which
from then on hands it every message published on that room in any worker (or host). A
delivered message is framed once and written to every local subscriber by `broadcast`.

Memory: a connection that subscribes to nothing costs the hub nothing (no attribute on the
connection, no entry anywhere). A subscribed one is in its rooms' sets and has one entry in
`_rooms_of` (a str for one room, a set for several), removed when it closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..broadcast import broadcast_payload
from ..payload import as_payload as _as_payload
from ..protocol.frames import CloseCode, Opcode
from ..stats import counters
from .broker import Broker, PublishError

if TYPE_CHECKING:
    from ..server.protocol import ServerProtocol

__all__ = ["MAX_CHANNEL", "Hub", "current", "publish"]

logger = logging.getLogger("fastws.pubsub")

#: Longest channel name, in UTF-8 bytes.
MAX_CHANNEL = 1024

#: Hubs of the servers running in this process, for `fastws.publish()`.
_running: list[Hub] = []


class Hub:
    """One server's channels in this process, and the broker that links them to the others."""

    def __init__(
        self, broker: Broker, *, limit: int | None = None, overflow: str | None = None
    ) -> None:
        self.broker = broker
        self._limit = limit
        self._overflow = overflow
        self._subscribers: dict[str, set[ServerProtocol]] = {}
        self._rooms_of: dict[ServerProtocol, str | set[str]] = {}
        self._started = False

    async def start(self) -> None:
        await self.broker.start(self._deliver, self._lost)
        self._started = True
        _running.append(self)

    async def close(self) -> None:
        if self in _running:
            _running.remove(self)
        if self._started:
            self._started = False
            await self.broker.close()

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, ws: ServerProtocol, channel: str) -> None:
        _check_channel(channel)
        if ws.closed:
            return  # it would never be unsubscribed: connection_lost has run or will not see it
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            subscribers = self._subscribers[channel] = set()
            self.broker.subscribe(channel)
        subscribers.add(ws)
        rooms = self._rooms_of.get(ws)
        if rooms is None:
            self._rooms_of[ws] = channel
        elif type(rooms) is str:
            if rooms != channel:
                self._rooms_of[ws] = {rooms, channel}
        else:
            rooms.add(channel)  # type: ignore[union-attr]

    def unsubscribe(self, ws: ServerProtocol, channel: str) -> None:
        rooms = self._rooms_of.get(ws)
        if rooms is None:
            return
        if type(rooms) is str:
            if rooms != channel:
                return
            del self._rooms_of[ws]
        else:
            rooms.discard(channel)  # type: ignore[union-attr]
            if len(rooms) == 1:
                self._rooms_of[ws] = next(iter(rooms))
        self._leave(ws, channel)

    def drop(self, ws: ServerProtocol) -> None:
        """`ws` closed: out of every room (nothing to do for most connections)."""
        if not self._rooms_of:
            return
        rooms = self._rooms_of.pop(ws, None)
        if rooms is None:
            return
        for channel in (rooms,) if type(rooms) is str else rooms:
            self._leave(ws, channel)

    def _leave(self, ws: ServerProtocol, channel: str) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            return
        subscribers.discard(ws)
        if not subscribers:
            del self._subscribers[channel]
            self.broker.unsubscribe(channel)

    def channels(self, ws: ServerProtocol) -> frozenset[str]:
        rooms = self._rooms_of.get(ws)
        if rooms is None:
            return frozenset()
        return frozenset((rooms,)) if type(rooms) is str else frozenset(rooms)

    def subscribers(self, channel: str) -> frozenset[ServerProtocol]:
        """This worker's subscribers of `channel` (not those of other workers)."""
        return frozenset(self._subscribers.get(channel, ()))

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, channel: str, message: Any) -> None:
        _check_channel(channel)
        if not self._started:
            raise PublishError("the server is not serving")
        opcode, payload = _as_payload(message)
        data = memoryview(payload) if isinstance(payload, bytearray) else payload
        try:
            await self.broker.publish(channel, data, opcode == Opcode.TEXT)
        except PublishError:
            counters.values[counters.PUBLISH_FAILED] += 1
            raise
        counters.values[counters.PUBLISHED] += 1

    def _deliver(self, channel: str, payload: memoryview, text: bool) -> None:
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        data = payload.obj
        if type(data) is not bytes or len(data) != payload.nbytes:
            data = payload.tobytes()  # the payload is only ours during this call
        broadcast_payload(
            subscribers,
            Opcode.TEXT if text else Opcode.BINARY,
            data,
            self._limit,
            self._overflow,
        )

    def _lost(self, channel: str | None) -> None:
        """Messages may have been lost on their way here: close the subscribers concerned with
        1013 (they reconnect and catch up their own way) rather than let them miss them."""
        if channel is None:
            victims = list(self._rooms_of)
        else:
            victims = list(self._subscribers.get(channel, ()))
        for ws in victims:
            self.drop(ws)  # no message after the gap
            ws.shutdown(CloseCode.TRY_AGAIN_LATER, "missed channel messages")


def _check_channel(channel: str) -> None:
    if type(channel) is not str or not channel:
        raise ValueError(f"a channel name is a non-empty str, not {channel!r}")
    if len(channel) > MAX_CHANNEL // 4 and len(channel.encode()) > MAX_CHANNEL:
        raise ValueError(f"channel names are at most {MAX_CHANNEL} bytes long")


def current() -> Hub:
    """The hub of the one server serving in this process."""
    if len(_running) == 1:
        return _running[0]
    if not _running:
        raise RuntimeError("no fastws server is serving in this process")
    raise RuntimeError("several servers serve in this process: use server.publish()")


async def publish(channel: str, message: Any) -> None:
    """Publish `message` (str: text, bytes-like: binary) on `channel` to its subscribers in
    every worker (and, with Redis, every host) of the server serving in this process.

    Raises PublishError if the broker could not take it (nothing was sent).
    """
    await current().publish(channel, message)
