"""The per-loop keepalive wheel (every connection visited from one timer) and a connection's
keepalive visits: when it pings, when a missing pong fails it, what a pong answers."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from fastws.keepalive import KEEPALIVE_PAYLOAD, Keepalive, KeepaliveWheel, ticks, wheel
from fastws.protocol.connection import Connection, State
from fastws.protocol.frames import CloseCode
from fastws.stats import counters


class FakeConnection:
    """Visited once (or every `again` ticks), each visit's loop time recorded."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fail: bool = False, again: int | None = None
    ) -> None:
        self.loop = loop
        self.pinged_at: list[float] = []
        self.dues: list[int] = []
        self.fail = fail
        self.again = again
        self.keepalive_bucket: set[Any] | None = None

    def keepalive_due(self, due: int, wheel: KeepaliveWheel) -> int | None:
        self.pinged_at.append(self.loop.time())
        self.dues.append(due)
        if self.fail:
            raise RuntimeError("broken transport")
        return None if self.again is None else due + self.again

    def keepalive_missed(self) -> None:
        raise AssertionError("never awaits a pong")


def test_each_connection_is_pinged_after_its_delay_not_before() -> None:
    """Connections added with different delays are each pinged once, no earlier than their
    delay (the wheel may be up to a tick late, never early beyond timer rounding)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        conns = [FakeConnection(loop) for _ in range(3)]
        start = loop.time()
        for conn, delay in zip(conns, (0.05, 0.02, 0.08), strict=True):
            keepalive.add(conn, delay)
        await asyncio.sleep(0.3)
        for conn, delay in zip(conns, (0.05, 0.02, 0.08), strict=True):
            assert len(conn.pinged_at) == 1
            assert conn.pinged_at[0] >= start + delay - 0.003

    asyncio.run(main())


def test_discarded_connection_is_not_pinged() -> None:
    """A closed connection leaves the wheel: it is never pinged afterwards."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        gone, kept = FakeConnection(loop), FakeConnection(loop)
        token = keepalive.add(gone, 0.03)
        keepalive.add(kept, 0.03)
        keepalive.discard(gone, token)
        await asyncio.sleep(0.15)
        assert gone.pinged_at == [] and len(kept.pinged_at) == 1

    asyncio.run(main())


def test_one_failing_ping_does_not_stop_the_others() -> None:
    """An exception from one connection's ping is logged; the rest of its bucket is pinged."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        conns = [FakeConnection(loop, fail=i == 1) for i in range(3)]
        for conn in conns:
            keepalive.add(conn, 0.02)
        await asyncio.sleep(0.1)
        assert all(len(conn.pinged_at) == 1 for conn in conns)

    asyncio.run(main())


def test_one_wheel_per_loop_and_interval() -> None:
    """Connections of a loop share a wheel; its tick is a tenth of the interval, at most 1 s."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert wheel(loop, 20.0) is wheel(loop, 20.0)
        assert wheel(loop, 20.0) is not wheel(loop, 0.5)
        assert wheel(loop, 20.0).tick == 1.0 and wheel(loop, 0.5).tick == 0.05

    asyncio.run(main())


def test_a_long_round_of_pings_lets_the_loop_run_in_between() -> None:
    """A wheel with more due connections than it can ping in one slice pings them over several
    loop iterations, so other callbacks (the worker's heartbeat, I/O) still run: a worker
    that fell behind is not killed by the master for a stopped heartbeat."""

    class SlowConnection(FakeConnection):
        def keepalive_due(self, due: int, wheel: KeepaliveWheel) -> int | None:
            time.sleep(0.002)
            return super().keepalive_due(due, wheel)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        conns = [SlowConnection(loop) for _ in range(40)]  # ~80 ms of pings, slices of 20 ms
        for conn in conns:
            keepalive.add(conn, 0.01)
        beats: list[float] = []

        def heartbeat() -> None:
            beats.append(loop.time())
            loop.call_later(0.001, heartbeat)

        heartbeat()
        await asyncio.sleep(0.3)
        assert all(len(conn.pinged_at) == 1 for conn in conns)
        first, last = min(c.pinged_at[0] for c in conns), max(c.pinged_at[0] for c in conns)
        assert any(first < beat < last for beat in beats)

    asyncio.run(main())


def test_the_wheel_moves_a_connection_to_the_tick_its_visit_names() -> None:
    """A visit returns the tick of the next one and the wheel keeps the connection for it
    (no re-registration per ping): visits come at exactly those ticks, in order, and the
    connection's token is the bucket it waits in; a visit returning None leaves the wheel."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.005)
        every3 = FakeConnection(loop, again=3)
        once = FakeConnection(loop)
        keepalive.add(every3, 0.005)
        keepalive.add(once, 0.005)
        while len(every3.dues) < 4:
            await asyncio.sleep(0.01)
        first = every3.dues[0]
        assert every3.dues[:4] == [first, first + 3, first + 6, first + 9]
        assert len(once.dues) == 1 and once.keepalive_bucket is None
        assert every3.keepalive_bucket is not None and every3 in every3.keepalive_bucket
        keepalive.discard(every3, every3.keepalive_bucket)
        assert len(keepalive) == 0

    asyncio.run(main())


def test_a_loop_that_fell_behind_does_not_make_up_for_missed_visits() -> None:
    """After the loop stalls for many ticks (a CPU-starved worker), a connection is visited
    as of now and then every period from there: no burst of back-to-back pings for the
    periods it missed (at a million connections that burst was 15 % more pings in the
    minutes after the ramp, on a machine with nothing to spare)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        every3 = FakeConnection(loop, again=3)
        keepalive.add(every3, 0.01)
        while not every3.pinged_at:
            await asyncio.sleep(0.005)
        time.sleep(0.15)  # the loop stalls for 15 ticks: five periods missed
        stalled = loop.time()
        while len(every3.pinged_at) < 4:
            await asyncio.sleep(0.01)
        after = [t for t in every3.pinged_at if t >= stalled]
        gaps = [b - a for a, b in itertools.pairwise(after)]
        assert gaps and min(gaps) > 0.02  # a period (30 ms) apart, not a burst
        assert every3.dues[1] - every3.dues[0] > 3  # its next visit counted from the stall

    asyncio.run(main())


def test_visits_more_than_a_tick_late_are_counted_as_late() -> None:
    """/metrics counts every wheel visit, and apart the visits that came more than a tick
    after they were due (the worker's loop was behind: its pings left late)."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        keepalive = KeepaliveWheel(loop, tick=0.01)
        on_time = [FakeConnection(loop) for _ in range(3)]
        for conn in on_time:
            keepalive.add(conn, 0.01)
        while not all(conn.pinged_at for conn in on_time):
            await asyncio.sleep(0.002)
        visits = counters.values[counters.KEEPALIVE_VISITS]
        late = counters.values[counters.KEEPALIVE_VISITS_LATE]
        stalled = [FakeConnection(loop) for _ in range(2)]
        for conn in stalled:
            keepalive.add(conn, 0.01)
        time.sleep(0.1)  # the loop stalls for 10 ticks
        while not all(conn.pinged_at for conn in stalled):
            await asyncio.sleep(0.002)
        return (
            counters.values[counters.KEEPALIVE_VISITS] - visits,
            counters.values[counters.KEEPALIVE_VISITS_LATE] - late,
        )

    before = counters.values[counters.KEEPALIVE_VISITS]
    assert asyncio.run(main()) == (2, 2)
    assert counters.values[counters.KEEPALIVE_VISITS] - before == 5


def test_ticks_round_up_and_never_reach_zero() -> None:
    """A ping_timeout in ticks is never shorter than asked (a peer is not failed early), and a
    period shorter than a tick still means one tick later, not now."""
    assert ticks(20.0, 1.0) == 20
    assert ticks(0.3, 0.03) == 10  # not 11 for a float a hair above 10
    assert ticks(20.5, 1.0) == 21
    assert ticks(0.001, 1.0) == 1


# -- a connection's visits, on a clock the test moves --------------------------------------------


class _Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """What a KeepaliveWheel uses of its loop (time, call_at, call_soon) on a clock that moves
    only when the test says: every tick of a wheel can be run and looked at."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[_Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        self._timers.append(timer)
        return timer

    def call_soon(self, callback: Callable[[], None]) -> _Timer:
        return self.call_at(self.now, callback)

    def advance(self, to: float) -> None:
        """Move the clock to `to`, running on the way each timer at its time."""
        while True:
            due = [t for t in self._timers if not t.cancelled and t.when <= to]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self._timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = to


class _Out:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.frames: list[bytes] = []
        self.sent_at: list[float] = []

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.sent_at.append(self.loop.now)


class Probe(Keepalive):
    """The Keepalive part of a WebSocket with the rest faked: writes and failures recorded."""

    __slots__ = (
        "_conn",
        "_ka_awaiting",
        "_message_timeout",
        "_out",
        "_partial",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_rbuf",
        "_transport",
        "failed",
        "failed_at",
        "keepalive_bucket",
    )

    def __init__(
        self,
        interval: float | None,
        timeout: float | None,
        client: bool = False,
        loop: FakeLoop | None = None,
    ) -> None:
        self._conn = Connection(client=client)
        self._transport: Any = object()
        self._out: Any = _Out(loop or FakeLoop())
        self._ka_awaiting = None
        self.keepalive_bucket = None
        self._ping_interval = interval
        self._ping_timeout = timeout
        self._message_timeout = None
        self._partial = None
        self._pings = None
        self._rbuf = memoryview(bytearray(256))
        self.failed: list[tuple[int, str]] = []
        self.failed_at: list[float] = []  # the fake clock's time of each failure

    def fail(self, code: int, reason: str) -> None:
        self.failed.append((code, reason))
        self.failed_at.append(self._out.loop.now)
        self._conn.state = State.CLOSING  # as WebSocket.fail's Close frame does

    def _peer(self) -> str:
        return "probe"

    @property
    def pings(self) -> int:
        return len(self._out.frames)


def _wheel(loop: FakeLoop | None = None, tick: float = 1.0) -> KeepaliveWheel:
    return KeepaliveWheel(cast(Any, loop or FakeLoop()), tick)


def _visits() -> int:
    return counters.values[counters.KEEPALIVE_VISITS]


def _run(
    loop: FakeLoop, probes: list[Probe], seconds: float, answer: Callable[[Probe], bool]
) -> None:
    """The wheel's ticks (1 s) for `seconds`; after each, the probes for which `answer` says so
    send the pong to a ping that left in it (as a peer does, well within the tick)."""
    end = loop.now + seconds
    while loop.now < end:
        before = [p.pings for p in probes]
        loop.advance(loop.now + 1.0)
        for probe, pings in zip(probes, before, strict=True):
            if probe.pings > pings and answer(probe):
                probe._pong(KEEPALIVE_PAYLOAD)


def test_server_keepalive_ping_is_one_shared_unmasked_frame() -> None:
    """RFC 6455 5.1/5.5.2: a server's keepalive ping is an unmasked Ping frame (FIN, opcode 9)
    with its payload, and every connection gets the very same bytes object (framed once)."""
    a, b = Probe(1.0, 1.0), Probe(1.0, 1.0)
    a.keepalive_due(10, _wheel())
    b.keepalive_due(10, _wheel())
    frame = a._out.frames[0]
    assert frame[0] == 0x89 and frame[1] == len(KEEPALIVE_PAYLOAD)
    assert frame[2:] == KEEPALIVE_PAYLOAD
    assert b._out.frames[0] is frame


def test_client_keepalive_ping_is_masked() -> None:
    """RFC 6455 5.3: a client's keepalive ping is masked (MASK bit set, 4-byte key)."""
    probe = Probe(1.0, 1.0, client=True)
    probe.keepalive_due(10, _wheel())
    frame = probe._out.frames[0]
    assert frame[0] == 0x89 and frame[1] == 0x80 | len(KEEPALIVE_PAYLOAD)


@pytest.mark.parametrize(
    ("interval", "timeout"), [(3.0, 3.0), (3.0, 1.0), (1.0, 3.0), (29.0, 20.0)]
)
def test_answered_pings_keep_coming_every_interval(interval: float, timeout: float) -> None:
    """A peer that answers every ping is pinged every ping_interval (counted from the last
    ping, so pings do not drift later), whatever ping_timeout is, never failed, and visited
    once per ping: with a ping_timeout shorter than the interval, the pong spares it the look
    at ping_timeout (a second visit per ping before, 20.9 M visits for 10.3 M pings at a
    million connections)."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(interval, timeout, loop=loop)
    keepalive.add(probe, interval)
    visits = _visits()
    _run(loop, [probe], 10 * interval, lambda _: True)
    sent_at = probe._out.sent_at
    assert probe.failed == [] and len(sent_at) == 10
    assert [b - a for a, b in itertools.pairwise(sent_at)] == [interval] * 9
    assert _visits() - visits == len(sent_at)
    assert probe._ka_awaiting is None and len(keepalive) == 1


@pytest.mark.parametrize(
    ("interval", "timeout"), [(3.0, 3.0), (3.0, 1.0), (1.0, 3.0), (29.0, 20.0)]
)
def test_no_pong_within_ping_timeout_fails_with_1011(interval: float, timeout: float) -> None:
    """--ping-timeout: a ping without a pong fails the connection with 1011 at the tick
    ping_timeout after the ping, not before; one ping waits at a time (a dead peer answers no
    second one, so none is sent); the connection then leaves the wheel."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(interval, timeout, loop=loop)
    keepalive.add(probe, 1.0)
    _run(loop, [probe], 2 * (interval + timeout), lambda _: False)
    assert probe.failed == [(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")]
    assert probe.pings == 1
    assert probe.failed_at == [probe._out.sent_at[0] + timeout]
    assert len(keepalive) == 0 and not keepalive._awaiting


def test_visits_counter_counts_pings_and_missed_pongs_only() -> None:
    """/metrics' keepalive visits at a million's settings (ping_interval 29 s, ping_timeout
    20 s): a connection that answers costs one visit per ping; one that does not, one visit
    more (at ping_timeout, which fails it)."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probes = [Probe(29.0, 20.0, loop=loop) for _ in range(100)]
    for i, probe in enumerate(probes):
        keepalive.add(probe, 1.0 + i % 29)
    dead = set(probes[:10])
    visits = _visits()
    _run(loop, probes, 29 * 5, lambda probe: probe not in dead)
    pings = sum(p.pings for p in probes)
    assert pings == 90 * 5 + 10
    assert sum(len(p.failed) for p in probes) == 10
    # The 10 dead: their ping, the miss, and the visit that finds them closed.
    assert _visits() - visits == pings + 10 + 10


def test_the_last_pong_of_a_tick_gives_back_its_sets_memory() -> None:
    """The set of connections awaiting their pong by a tick grows with every ping of a tick
    (550 a worker at a million: 32 KB) and a set never shrinks as members leave: the last
    pong clears it, so it does not hold that memory until ping_timeout's tick."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probes = [Probe(29.0, 20.0, loop=loop) for _ in range(550)]
    for probe in probes:
        keepalive.add(probe, 1.0)
    loop.advance(1001.0)
    awaiting = probes[0]._ka_awaiting
    assert awaiting is not None and len(awaiting) == 550
    grown = sys.getsizeof(awaiting)
    for probe in probes[:-1]:
        probe._pong(KEEPALIVE_PAYLOAD)
    assert sys.getsizeof(awaiting) == grown
    probes[-1]._pong(KEEPALIVE_PAYLOAD)
    assert not awaiting and sys.getsizeof(awaiting) < grown / 50


def test_a_late_pong_with_ping_timeout_over_the_interval_no_second_ping_meanwhile() -> None:
    """ping_timeout longer than ping_interval: while a ping waits for its pong no second one
    leaves; a pong within ping_timeout saves the connection, and pings go on from there."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(2.0, 5.0, loop=loop)
    keepalive.add(probe, 1.0)
    _run(loop, [probe], 4.0, lambda _: False)  # the ping at 1001: none at 1003
    assert probe.pings == 1
    probe._pong(KEEPALIVE_PAYLOAD)  # at 1004, within ping_timeout (1006)
    _run(loop, [probe], 10.0, lambda _: True)
    assert probe.failed == []
    assert probe._out.sent_at == [1001.0, 1005.0, 1007.0, 1009.0, 1011.0, 1013.0]


def test_any_pong_answers_the_keepalive_ping() -> None:
    """RFC 6455 5.5.3: a pong may answer only the latest ping, and an unsolicited pong is a
    heartbeat: a pong with any payload received after the keepalive ping satisfies it."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(3.0, 1.0, loop=loop)
    keepalive.add(probe, 1.0)
    loop.advance(1001.0)
    probe._pong(b"something else")
    loop.advance(1004.0)
    assert probe.failed == [] and probe.pings == 2


def test_a_pong_before_any_keepalive_ping_answers_nothing_in_advance() -> None:
    """A pong that came before the keepalive ping went out does not answer it: the peer must
    answer each ping."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(3.0, 1.0, loop=loop)
    keepalive.add(probe, 1.0)
    probe._pong(KEEPALIVE_PAYLOAD)
    loop.advance(1002.0)
    assert probe.failed and probe.failed[0][0] == CloseCode.INTERNAL_ERROR


def test_without_ping_timeout_pings_go_on_unanswered() -> None:
    """ping_timeout off: the connection is pinged every interval and never failed for a
    missing pong; nothing waits for its pongs."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(2.0, None, loop=loop)
    keepalive.add(probe, 2.0)
    loop.advance(1010.0)
    assert probe._out.sent_at == [1002.0, 1004.0, 1006.0, 1008.0, 1010.0]
    assert probe.failed == [] and not keepalive._awaiting


def test_closed_connection_leaves_the_wheel_without_a_ping() -> None:
    """A connection that is closing or lost is not pinged and is not visited again."""
    probe = Probe(1.0, 1.0)
    probe._conn.state = State.CLOSING
    assert probe.keepalive_due(100, _wheel()) is None
    probe = Probe(1.0, 1.0)
    probe._transport = None
    assert probe.keepalive_due(100, _wheel()) is None
    assert probe.pings == 0


def test_a_connection_gone_before_its_ping_timeout_is_not_failed() -> None:
    """A connection lost while its ping waits (WebSocket.connection_lost takes it out of the
    wheel's set awaiting pongs) is not failed, nor held, until its ping_timeout."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(3.0, 2.0, loop=loop)
    keepalive.add(probe, 1.0)
    loop.advance(1001.0)
    assert probe._ka_awaiting is not None and probe in probe._ka_awaiting
    probe._ka_awaiting.discard(probe)
    probe._transport = None
    loop.advance(1005.0)
    assert probe.failed == [] and len(keepalive) == 0


def _read(probe: Probe, data: bytes) -> int:
    probe._rbuf[: len(data)] = data
    return len(data)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def test_a_lone_pong_answers_keepalive_without_the_parser() -> None:
    """The pong to a keepalive ping, alone in a read, answers it on the short path: the
    connection leaves the wheel's set awaiting pongs (nothing visits it at ping_timeout)."""
    loop = FakeLoop()
    keepalive = _wheel(loop)
    probe = Probe(3.0, 1.0, loop=loop)
    keepalive.add(probe, 1.0)
    loop.advance(1001.0)
    awaiting = probe._ka_awaiting
    assert awaiting is not None and probe in awaiting
    assert probe._pong_only(_read(probe, _client_frame(0xA, KEEPALIVE_PAYLOAD)))
    assert probe._ka_awaiting is None and probe not in awaiting
    loop.advance(1004.0)
    assert probe.failed == [] and probe.pings == 2


@pytest.mark.parametrize(
    "case", ["unmasked", "two frames", "partial", "app ping waits", "mid-frame", "closing"]
)
def test_anything_but_a_lone_client_pong_goes_to_the_parser(case: str) -> None:
    """The short path takes only what the parser would take as one complete pong: an
    unmasked one (1002, RFC 6455 5.1), one followed by more bytes, half a frame, a read in the
    middle of another frame, or any pong while the application's ping() waits for it (it
    needs its payload) go to the parser; a connection no longer open ignores it there too."""
    probe = Probe(1.0, 1.0)
    probe.keepalive_due(100, _wheel())
    frame = _client_frame(0xA, KEEPALIVE_PAYLOAD)
    if case == "unmasked":
        frame = bytes([0x8A, len(KEEPALIVE_PAYLOAD)]) + KEEPALIVE_PAYLOAD
    elif case == "two frames":
        frame += _client_frame(0x1, b"hi")
    elif case == "partial":
        frame = frame[:-1]
    elif case == "app ping waits":
        probe._pings = {}
    elif case == "mid-frame":
        probe._conn.receive_data(_client_frame(0x2, b"x" * 100)[:20])
    elif case == "closing":
        probe._conn.state = State.CLOSING
    assert not probe._pong_only(_read(probe, frame))
    assert probe._ka_awaiting is not None and probe in probe._ka_awaiting  # not answered


# -- on a real loop, against a real peer ----------------------------------------------------------


def test_a_client_whose_pings_are_answered_is_visited_once_per_interval() -> None:
    """fastws' client (ping_interval 100 ms, ping_timeout 50 ms) against a websockets server,
    which answers every ping: about one wheel visit per ping, not two."""
    websockets_server = pytest.importorskip("websockets.asyncio.server")
    import fastws

    async def main() -> tuple[int, float]:
        async def idle(conn: Any) -> None:
            await conn.wait_closed()

        async with websockets_server.serve(idle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with fastws.connect(
                f"ws://127.0.0.1:{port}", ping_interval=0.1, ping_timeout=0.05
            ):
                visits = _visits()
                start = time.monotonic()
                await asyncio.sleep(1.2)
                return _visits() - visits, time.monotonic() - start

    visits, elapsed = asyncio.run(asyncio.wait_for(main(), 30))
    assert 0.5 * elapsed / 0.1 <= visits <= elapsed / 0.1 + 2  # before: ~2 per interval


def test_a_client_whose_pings_are_not_answered_fails_at_ping_timeout() -> None:
    """A peer that completes the handshake and then answers nothing: the client's keepalive
    fails the connection with 1011 about ping_timeout after its first ping, not later."""
    import base64
    import hashlib

    import fastws

    async def main() -> tuple[int | None, float]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            await reader.read()  # never answers, until the client goes
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            ws = await fastws.connect(
                f"ws://127.0.0.1:{port}", ping_interval=0.2, ping_timeout=0.1, close_timeout=0.1
            )
            start = time.monotonic()
            await ws.wait_closed()
            return ws.close_code, time.monotonic() - start

    code, elapsed = asyncio.run(asyncio.wait_for(main(), 30))
    assert code == CloseCode.INTERNAL_ERROR
    assert 0.3 - 0.05 <= elapsed < 0.3 + 0.3  # ping at ~0.2 s, failed at ping_timeout after it
