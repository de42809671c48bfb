"""Keepalive pings for every connection of an event loop, from one timer.

A timer per connection costs ~600 B each in uvloop (a TimerHandle and its libuv timer), which
at 100,000 idle connections is 60 MB for clocks that mostly agree. Here connections wait in
buckets of `tick` seconds; one timer per loop wakes at the next bucket and pings everyone in
it. A ping leaves up to one tick late, which keepalive does not mind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from .exceptions import closed as _closed
from .flow import retrieve as _retrieve
from .protocol.connection import Connection, State
from .protocol.frames import CloseCode

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["Keepalive", "KeepaliveWheel", "wheel"]

logger = logging.getLogger("fastws")

#: Longest run of pings one timer callback sends before it lets the loop do other work (I/O,
#: the worker's heartbeat) and carries on in the next iteration. Without it, a worker that
#: fell behind (CPU-starved, many connections due at once) pinged for minutes in one callback,
#: its heartbeat stopped and the master killed it, connections and all.
SLICE = 0.02


class _Pinger(Protocol):
    def keepalive_due(self) -> None: ...


class KeepaliveWheel:
    """Buckets of connections keyed by the tick at which they are due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self._loop = loop
        self._tick = tick
        self._buckets: dict[int, set[_Pinger]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._next = math.inf  # the tick the timer is set for

    def add(self, conn: _Pinger, delay: float) -> int:
        """Ping `conn` (call its `keepalive_due`) in about `delay` s; return a token."""
        due = math.ceil((self._loop.time() + delay) / self._tick)
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = set()
        bucket.add(conn)
        if due < self._next:
            self._arm(due)
        return due

    def discard(self, conn: _Pinger, token: int) -> None:
        bucket = self._buckets.get(token)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del self._buckets[token]

    def _arm(self, due: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._next = due
        self._timer = self._loop.call_at(due * self._tick, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._next = math.inf
        # Timers may fire a hair early (uvloop rounds to milliseconds): allow 2 ms.
        now = math.floor((self._loop.time() + 0.002) / self._tick)
        deadline = time.monotonic() + SLICE
        for due in sorted(key for key in self._buckets if key <= now):
            bucket = self._buckets[due]
            while bucket:
                conn = bucket.pop()
                try:
                    conn.keepalive_due()
                except Exception:  # one connection's failure must not stop the others' pings
                    logger.exception("keepalive ping failed")
                if time.monotonic() > deadline and bucket:  # the rest in the next iteration
                    self._next = due
                    self._timer = self._loop.call_soon(self._fire)  # type: ignore[assignment]
                    return
            del self._buckets[due]
        if self._buckets:
            self._arm(min(self._buckets))


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, KeepaliveWheel]] = (
    weakref.WeakKeyDictionary()
)


def wheel(loop: asyncio.AbstractEventLoop, interval: float) -> KeepaliveWheel:
    """The loop's wheel for this ping interval: ticks of interval/10, at most 1 s."""
    tick = min(1.0, interval / 10)
    wheels = _wheels.get(loop)
    if wheels is None:
        wheels = _wheels[loop] = {}
    found = wheels.get(tick)
    if found is None:
        found = wheels[tick] = KeepaliveWheel(loop, tick)
    return found


class Keepalive(asyncio.BufferedProtocol):
    """Pings of a connection: `ping()` and its pong, the keepalive wheel's visits (ping the
    peer, fail a dead one with 1011) and message_timeout. Mixed into `WebSocket`, whose slots
    hold the state."""

    __slots__ = ()

    # The WebSocket's attributes this part uses (declared for type checkers).
    _conn: Connection
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _out: Outbox
    _pings: dict[bytes, tuple[asyncio.Future[float], float]] | None
    _keepalive: int | None
    _ping_interval: float | None
    _ping_timeout: float | None
    _message_timeout: float | None
    _partial: tuple[int, float] | None
    _reading_paused: bool
    _writing_paused: bool
    close_code: int | None
    close_reason: str | None

    if TYPE_CHECKING:

        def _peer(self) -> str: ...

        def _dispatch(self) -> None: ...

        def fail(self, code: int, reason: str) -> None: ...

    async def ping(self, data: bytes = b"") -> float:
        """Send a ping and wait for its pong; return the round trip in seconds."""
        conn = self._conn
        transport = self._transport
        if transport is None or conn.state is not State.OPEN:
            raise _closed(self.close_code or CloseCode.ABNORMAL, self.close_reason or "")
        data = bytes(data)
        if self._pings is None:
            self._pings = {}
        if data in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        frame = conn.send_ping(data)
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[data] = (fut, time.monotonic())
        self._out.write(frame)
        return await fut

    def _pong(self, payload: bytes) -> None:
        if not self._pings:
            return  # 5.5.3: an unsolicited pong needs no answer
        entry = self._pings.pop(payload, None)
        if entry is None:
            return  # 5.5.3: an unsolicited pong needs no answer
        fut, sent = entry
        # 5.5.3: a pong answers its ping "and all earlier pings", so resolve those too.
        now = time.monotonic()
        for key, (other, other_sent) in list(self._pings.items()):
            if other_sent <= sent:
                del self._pings[key]
                if not other.done():
                    other.set_result(now - other_sent)
        if not fut.done():
            fut.set_result(now - sent)
        if not self._pings:
            self._pings = None

    def _tick_period(self) -> float | None:
        """How often the loop's KeepaliveWheel visits this connection (None: never): every
        ping_interval, or twice per message_timeout when keepalive pings are off."""
        if self._ping_interval is not None:
            return self._ping_interval
        if self._message_timeout is not None:
            return self._message_timeout / 2
        return None

    def keepalive_due(self) -> None:
        """The wheel's visit: fail a message that takes too long, then ping the peer (no pong
        within ping_timeout means a dead peer: close 1011)."""
        self._keepalive = None
        if self._conn.state is not State.OPEN or self._transport is None:
            return
        if self._message_timeout is not None and self._message_expired():
            return
        period = self._tick_period()
        assert period is not None
        if self._ping_interval is None:
            self._keepalive = wheel(self._loop, period).add(self, period)
            return
        payload = int(time.monotonic() * 1e6).to_bytes(8, "big")
        self._out.write(self._conn.send_ping(payload))
        fut: asyncio.Future[float] = self._loop.create_future()
        # Nobody awaits a keepalive ping: retrieve its exception (connection lost) so asyncio
        # does not log "Future exception was never retrieved" for each lost connection.
        fut.add_done_callback(_retrieve)
        if self._pings is None:
            self._pings = {}
        self._pings[payload] = (fut, time.monotonic())
        timeout = self._ping_timeout
        if timeout is not None:
            timer = self._loop.call_later(timeout, self._keepalive_expired, fut)
            fut.add_done_callback(lambda _: timer.cancel())
        self._keepalive = wheel(self._loop, period).add(self, period)

    def _message_expired(self) -> bool:
        """message_timeout: a message still incomplete that long after this check first saw it
        fails the connection with 1008. A peer that answers pings but trickles a message (or
        one frame) forever would otherwise hold its connection and buffer indefinitely.

        Checked at the wheel's visits only, so nothing is added to the message path; the
        close comes between message_timeout and message_timeout + one period after the
        message started. While we are not reading (backpressure, memory budget) the clock
        restarts: that delay is ours, not the peer's.
        """
        conn = self._conn
        current = conn.partial()
        if not current or self._reading_paused or self._writing_paused or conn.blocked:
            self._partial = None
            return False
        now = self._loop.time()
        seen = self._partial
        if seen is None or seen[0] != current:
            self._partial = (current, now)
            return False
        assert self._message_timeout is not None
        if now - seen[1] < self._message_timeout:
            return False
        self._partial = None
        # 7.4.1: 1008 is the generic "violates its policy" code; RFC 6455 has no timeout code.
        conn.fail(
            CloseCode.POLICY_VIOLATION,
            f"message incomplete after {now - seen[1]:.0f}s (message_timeout"
            f" {self._message_timeout:g}s, {conn.partial_size()} bytes received)",
        )
        self._dispatch()
        return True

    def _keepalive_expired(self, fut: asyncio.Future[float]) -> None:
        if fut.done() or self._transport is None:
            return
        fut.cancel()
        logger.info("connection from %s: no pong to a keepalive ping, closing", self._peer())
        self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
