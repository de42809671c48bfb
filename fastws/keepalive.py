"""Keepalive pings for every connection of an event loop, from one timer.

A timer per connection costs ~600 B each in uvloop (a TimerHandle and its libuv timer), which
at 100,000 idle connections is 60 MB for clocks that mostly agree. Here connections wait in
buckets of `tick` seconds; one timer per loop wakes at the next bucket and visits everyone in
it. A ping leaves up to one tick late, which keepalive does not mind; a loop that fell
further behind pings as of now and does not make up for missed pings.

Every worker's wheel fires on the same boundaries (the loops share the machine's monotonic
clock). Firing each at a random point of its tick instead spread the pings in a 250,000
connection proxy of a million (`bench.million --connections 250000 --workers 63
--ping-interval 7.25`: 0.15 % of the gaps between two pings more than 0.25 s over the
interval, against 9 %), but at a million on the same 2 cores it made them worse, twice (9.7 %
and 19 % of the gaps over 30 s at a 29 s interval, against 3.5 %): not kept, not understood.
/metrics counts the visits that come more than a tick late (the worker's loop is behind).

A visit is the whole cost of keepalive for an idle connection, so it allocates nothing: the
ping is one shared, preframed bytes object (server frames are not masked) written to the
transport, and the wheel moves the connection to the bucket of its next ping, which the visit
names. Whether the pong comes in time is not decided by a timer and a Future per ping, nor by
a second visit: the visit also puts the connection in the wheel's set of those awaiting a
pong by `ping_timeout`'s tick, and the pong takes it out (one `set.discard`). Whoever is
still in that set when its tick comes gets no pong in time and is failed with 1011. A
connection that answers is visited once per ping_interval; with a ping_timeout shorter than
the interval it used to be visited twice (the ping, then a look for its pong at
ping_timeout): 20.9 M visits for 10.3 M pings in a hold at a million connections.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import closed as _closed
from .protocol.connection import Connection, State
from .protocol.frames import CloseCode, Opcode
from .stats import counters

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["KEEPALIVE_PAYLOAD", "Keepalive", "KeepaliveWheel", "ticks", "wheel"]

logger = logging.getLogger("fastws")

#: Longest run of visits one timer callback makes before it lets the loop do other work (I/O,
#: the worker's heartbeat) and carries on in the next iteration. Without it, a worker that
#: fell behind (CPU-starved, many connections due at once) pinged for minutes in one callback,
#: its heartbeat stopped and the master killed it, connections and all.
SLICE = 0.02

#: The application data of every keepalive ping. Any pong answers a keepalive ping (see
#: `Keepalive._pong`); the payload only keeps it apart from the user's `ping()` payloads.
KEEPALIVE_PAYLOAD = b"fastws:k"
#: A server's keepalive ping on the wire, made once: 5.1 "A server MUST NOT mask any frames",
#: so the same bytes go to every connection.
_SERVER_PING = bytes([0x80 | Opcode.PING, len(KEEPALIVE_PAYLOAD)]) + KEEPALIVE_PAYLOAD


def ticks(seconds: float, tick: float) -> int:
    """`seconds` in whole ticks, rounded up (a deadline is never shortened), at least 1."""
    return max(1, math.ceil(seconds / tick - 1e-9))


class _Visited(Protocol):
    """What the wheel visits. `keepalive_bucket` is the wheel's bookkeeping on the connection:
    the bucket it waits in (None: not in the wheel), set by the wheel as it moves it."""

    keepalive_bucket: set[Any] | None

    def keepalive_due(self, due: int, wheel: KeepaliveWheel) -> int | None: ...

    def keepalive_missed(self) -> None: ...


class KeepaliveWheel:
    """Buckets of connections keyed by the tick at which they are due, and sets of the
    connections whose pong is due by a tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self._loop = loop
        self.tick = tick  #: seconds per tick (read-only)
        self._buckets: dict[int, set[_Visited]] = {}
        # Connections pinged and not answered yet, by the tick of their ping_timeout: the pong
        # takes a connection out; whoever is left when the tick comes is failed.
        self._awaiting: dict[int, set[_Visited]] = {}
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        # The tick the timer is set for; -inf while a pass runs (it arms the timer at its end).
        self._next = math.inf

    def add(self, conn: _Visited, delay: float) -> set[Any]:
        """Visit `conn` (call its `keepalive_due`) in about `delay` s. Its token for `discard`
        (the bucket it waits in, shared with the others there) is in `conn.keepalive_bucket`, which
        the wheel updates as it moves the connection."""
        due = math.ceil((self._loop.time() + delay) / self.tick)
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = set()
        bucket.add(conn)
        conn.keepalive_bucket = bucket
        if due < self._next:
            self._arm(due)
        return bucket

    @staticmethod
    def discard(conn: _Visited, token: set[Any]) -> None:
        """Take `conn` out (its bucket, if empty now, goes when its tick comes)."""
        token.discard(conn)

    def awaiting(self, due: int) -> set[Any]:
        """The set of connections whose pong is due by tick `due`. A visit that pings adds its
        connection and keeps the set; the pong takes it out again (`discard`), and whoever is
        still in it at `due` gets its `keepalive_missed` call, before that tick's visits."""
        found = self._awaiting.get(due)
        if found is None:
            found = self._awaiting[due] = set()
            if due < self._next:
                self._arm(due)
        return found

    def __len__(self) -> int:
        """Connections in the wheel."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def _arm(self, due: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._next = due
        self._timer = self._loop.call_at(due * self.tick, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._next = -math.inf  # nothing arms the timer while the pass runs: it does, at its end
        tick = self.tick
        buckets = self._buckets
        awaiting = self._awaiting
        # Timers may fire a hair early (uvloop rounds to milliseconds): allow 2 ms.
        now = math.floor((self._loop.time() + 0.002) / tick)
        clock = time.monotonic
        deadline = clock() + SLICE
        stats = counters.values
        keys = [key for key in buckets if key <= now]
        keys.extend(key for key in awaiting if key <= now and key not in buckets)
        keys.sort()
        for due in keys:
            # /metrics: visits, and those more than a tick late (the loop is behind: pings
            # leave late). Counted per bucket (or slice of one), never per connection.
            late = self._loop.time() - due * tick > tick
            # First the pongs that did not come by this tick (an answered connection is not
            # visited for it), then this tick's pings: with ping_timeout = ping_interval a
            # connection is failed, not pinged again, when both fall on one tick.
            missed = awaiting.get(due)
            if missed is not None:
                size = len(missed)
                while missed:
                    conn = missed.pop()
                    try:
                        conn.keepalive_missed()
                    except Exception:
                        logger.exception("keepalive timeout failed")
                    if missed and clock() > deadline:
                        self._resume(stats, size - len(missed), late, due)
                        return
                del awaiting[due]
                self._count(stats, size, late)
            bucket = buckets.get(due)
            if bucket is None:
                continue
            size = len(bucket)
            # A bucket more than a tick late (the loop fell behind: CPU-starved, a stall) is
            # visited as of now: its pings leave now and the next ones count from here, not in
            # a burst that makes up for missed intervals when the machine has least to spare,
            # nor with a ping_timeout counted from a tick the ping did not leave at.
            at = due if now - due <= 1 else now
            # Most connections of a bucket go to the same next bucket: found once.
            to_key: int = at
            to_set: set[_Visited] | None = None
            while bucket:
                conn = bucket.pop()
                try:
                    nxt = conn.keepalive_due(at, self)
                except Exception:  # one connection's failure must not stop the others' pings
                    logger.exception("keepalive ping failed")
                    nxt = None
                if nxt is None:
                    conn.keepalive_bucket = None
                else:
                    if nxt != to_key or to_set is None:
                        to_key = max(nxt, at + 1)
                        to_set = buckets.get(to_key)
                        if to_set is None:
                            to_set = buckets[to_key] = set()
                    to_set.add(conn)
                    conn.keepalive_bucket = to_set
                if bucket and clock() > deadline:  # the rest in the next iteration
                    self._resume(stats, size - len(bucket), late, due)
                    return
            del buckets[due]
            self._count(stats, size, late)
        self._next = math.inf
        if buckets or awaiting:
            self._arm(min(itertools.chain(buckets, awaiting)))

    def _resume(self, stats: list[int], visits: int, late: bool, due: int) -> None:
        """A pass ran out of its slice at tick `due`: the rest in the loop's next iteration."""
        self._count(stats, visits, late)
        self._next = due
        self._timer = self._loop.call_soon(self._fire)

    @staticmethod
    def _count(stats: list[int], visits: int, late: bool) -> None:
        stats[counters.KEEPALIVE_VISITS] += visits
        if late:
            stats[counters.KEEPALIVE_VISITS_LATE] += visits


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
    keepalive_bucket: set[Any] | None  # the KeepaliveWheel bucket we wait in
    # The keepalive ping in flight: the wheel's set of those awaiting their pong by its
    # ping_timeout, which we are in; None when no keepalive ping waits for its pong.
    _ka_awaiting: set[Any] | None
    _rbuf: memoryview
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
        # Any pong answers the keepalive ping in flight: its own, one to a later ping (5.5.3:
        # a pong may answer only "the most recently processed Ping frame") or an unsolicited
        # one ("This serves as a unidirectional heartbeat"). All prove the peer is there.
        awaiting = self._ka_awaiting
        if awaiting is not None:
            self._answered(awaiting)
        if not self._pings:
            return  # 5.5.3: an unsolicited pong needs no answer
        entry = self._pings.pop(payload, None)
        if entry is None:
            return  # 5.5.3: an unsolicited pong needs no answer
        fut, sent_at = entry
        # 5.5.3: a pong answers its ping "and all earlier pings", so resolve those too.
        now = time.monotonic()
        for key, (other, other_sent) in list(self._pings.items()):
            if other_sent <= sent_at:
                del self._pings[key]
                if not other.done():
                    other.set_result(now - other_sent)
        if not fut.done():
            fut.set_result(now - sent_at)
        if not self._pings:
            self._pings = None

    def _pong_only(self, n: int) -> bool:
        """The read `_rbuf[:n]` is exactly one Pong frame from a client, between frames, and
        no `ping()` of the application waits for a pong: it answers the keepalive ping, and
        that is all there is to do (any pong does, see `_pong`), so it is not parsed. False:
        the bytes go to the parser, which also reports anything wrong with them.

        The pong to every keepalive ping comes this way: parsing it (an event object, the
        unmasking, the dispatch) was a quarter of what keepalive cost an idle connection.
        """
        if self._pings is not None or not self._conn.lone_pong(self._rbuf, n):
            return False
        awaiting = self._ka_awaiting
        if awaiting is not None:
            self._answered(awaiting)
        return True

    def _answered(self, awaiting: set[Any]) -> None:
        """The keepalive ping got its pong (or the connection is gone): out of the wheel's set
        of those awaiting one (so not visited at ping_timeout). The last one out clears the set: a set never shrinks as
        its members go, and the ~550 a worker pings per tick at a million grow it to 32 KB,
        which would otherwise stay until ping_timeout's tick (20 of them alive per worker:
        ~40 B per connection)."""
        awaiting.discard(self)
        self._ka_awaiting = None
        if not awaiting:
            awaiting.clear()

    def _tick_period(self) -> float | None:
        """How often the loop's KeepaliveWheel visits this connection (None: never): every
        ping_interval, or twice per message_timeout when keepalive pings are off."""
        if self._ping_interval is not None:
            return self._ping_interval
        if self._message_timeout is not None:
            return self._message_timeout / 2
        return None

    def keepalive_due(self, due: int, wheel: KeepaliveWheel) -> int | None:
        """The wheel's visit at tick `due`: fail a message that takes too long, ping the peer
        every ping_interval and, with a ping_timeout, join the wheel's set of those whose pong
        is due by then (`keepalive_missed` fails us if it does not come). Returns the tick of
        the next visit (None: none, the connection is done)."""
        if self._conn.state is not State.OPEN or self._transport is None:
            return None
        if self._message_timeout is not None and self._message_expired():
            return None
        interval = self._ping_interval
        tick = wheel.tick
        if interval is None:
            assert self._message_timeout is not None
            return due + ticks(self._message_timeout / 2, tick)
        every = ticks(interval, tick)
        timeout = self._ping_timeout
        if timeout is not None:
            if self._ka_awaiting is not None:
                # ping_timeout >= ping_interval and the last ping still waits for its pong: no
                # second ping meanwhile (a dead peer answers neither); the wheel fails us at
                # ping_timeout if none comes.
                return due + every
            awaiting = self._ka_awaiting = wheel.awaiting(due + ticks(timeout, tick))
            awaiting.add(self)
        conn = self._conn
        self._out.write(conn.send_ping(KEEPALIVE_PAYLOAD) if conn.client else _SERVER_PING)
        return due + every

    def keepalive_missed(self) -> None:
        """The wheel's call at ping_timeout after a keepalive ping that got no pong: 1011."""
        self._ka_awaiting = None
        if self._conn.state is not State.OPEN or self._transport is None:
            return
        logger.info("connection from %s: no pong to a keepalive ping, closing", self._peer())
        self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

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
