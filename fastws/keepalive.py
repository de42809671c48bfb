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
from typing import Protocol

__all__ = ["KeepaliveWheel", "wheel"]

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
