"""The per-loop keepalive wheel (every connection visited from one timer) and a connection's
keepalive visits: when it pings, when a missing pong fails it, what a pong answers."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from fastws.keepalive import KEEPALIVE_PAYLOAD, Keepalive, KeepaliveWheel, ticks, wheel
from fastws.protocol.connection import Connection, State
from fastws.protocol.frames import CloseCode


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

    def keepalive_due(self, due: int, tick: float) -> int | None:
        self.pinged_at.append(self.loop.time())
        self.dues.append(due)
        if self.fail:
            raise RuntimeError("broken transport")
        return None if self.again is None else due + self.again


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
        assert wheel(loop, 20.0)._tick == 1.0 and wheel(loop, 0.5)._tick == 0.05

    asyncio.run(main())


def test_a_long_round_of_pings_lets_the_loop_run_in_between() -> None:
    """A wheel with more due connections than it can ping in one slice pings them over several
    loop iterations, so other callbacks (the worker's heartbeat, I/O) still run: a worker
    that fell behind is not killed by the master for a stopped heartbeat."""

    class SlowConnection(FakeConnection):
        def keepalive_due(self, due: int, tick: float) -> int | None:
            time.sleep(0.002)
            return super().keepalive_due(due, tick)

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
    from fastws.stats import counters

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


# -- a connection's visits, driven tick by tick (no clock) --------------------------------------


class _Out:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)


class Probe(Keepalive):
    """The Keepalive part of a WebSocket with the rest faked: writes and failures recorded."""

    __slots__ = (
        "_conn",
        "_ka_sent",
        "_message_timeout",
        "_out",
        "_partial",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_rbuf",
        "_transport",
        "failed",
        "keepalive_bucket",
    )

    def __init__(self, interval: float | None, timeout: float | None, client: bool = False) -> None:
        self._conn = Connection(client=client)
        self._transport: Any = object()
        self._out: Any = _Out()
        self._ka_sent = None
        self.keepalive_bucket = None
        self._ping_interval = interval
        self._ping_timeout = timeout
        self._message_timeout = None
        self._partial = None
        self._pings = None
        self._rbuf = memoryview(bytearray(256))
        self.failed: list[tuple[int, str]] = []

    def fail(self, code: int, reason: str) -> None:
        self.failed.append((code, reason))

    def _peer(self) -> str:
        return "probe"

    @property
    def pings(self) -> int:
        return len(self._out.frames)


def test_server_keepalive_ping_is_one_shared_unmasked_frame() -> None:
    """RFC 6455 5.1/5.5.2: a server's keepalive ping is an unmasked Ping frame (FIN, opcode 9)
    with its payload, and every connection gets the very same bytes object (framed once)."""
    a, b = Probe(1.0, 1.0), Probe(1.0, 1.0)
    a.keepalive_due(10, 1.0)
    b.keepalive_due(10, 1.0)
    frame = a._out.frames[0]
    assert frame[0] == 0x89 and frame[1] == len(KEEPALIVE_PAYLOAD)
    assert frame[2:] == KEEPALIVE_PAYLOAD
    assert b._out.frames[0] is frame


def test_client_keepalive_ping_is_masked() -> None:
    """RFC 6455 5.3: a client's keepalive ping is masked (MASK bit set, 4-byte key)."""
    probe = Probe(1.0, 1.0, client=True)
    probe.keepalive_due(10, 1.0)
    frame = probe._out.frames[0]
    assert frame[0] == 0x89 and frame[1] == 0x80 | len(KEEPALIVE_PAYLOAD)


@pytest.mark.parametrize(("interval", "timeout"), [(3.0, 3.0), (3.0, 1.0), (1.0, 3.0)])
def test_answered_pings_keep_coming_every_interval(interval: float, timeout: float) -> None:
    """A peer that answers every ping is pinged every ping_interval (counted from the last
    ping, so pings do not drift later), whatever ping_timeout is, and never failed."""
    probe = Probe(interval, timeout)
    due, sent_at = 100, []
    while due < 130:
        before = probe.pings
        nxt = probe.keepalive_due(due, 1.0)
        if probe.pings > before:
            sent_at.append(due)
            probe._pong(KEEPALIVE_PAYLOAD)
        assert nxt is not None and nxt > due
        due = nxt
    assert probe.failed == []
    assert sent_at[1:] == [t + int(interval) for t in sent_at[:-1]]


@pytest.mark.parametrize(("interval", "timeout"), [(3.0, 3.0), (3.0, 1.0), (1.0, 3.0)])
def test_no_pong_within_ping_timeout_fails_with_1011(interval: float, timeout: float) -> None:
    """--ping-timeout: a ping without a pong fails the connection with 1011 at the first visit
    ping_timeout after the ping, not before; one ping waits at a time (a dead peer answers no
    second one, so none is sent); the connection then leaves the wheel."""
    probe = Probe(interval, timeout)
    due = 100
    nxt = probe.keepalive_due(due, 1.0)
    while not probe.failed:
        assert nxt is not None
        due = nxt
        nxt = probe.keepalive_due(due, 1.0)
    assert nxt is None
    assert probe.failed == [(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")]
    assert due - 100 == int(timeout)
    assert probe.pings == 1


def test_any_pong_answers_the_keepalive_ping() -> None:
    """RFC 6455 5.5.3: a pong may answer only the latest ping, and an unsolicited pong is a
    heartbeat: a pong with any payload received after the keepalive ping satisfies it."""
    probe = Probe(1.0, 1.0)
    probe.keepalive_due(100, 1.0)
    probe._pong(b"something else")
    assert probe.keepalive_due(101, 1.0) == 102
    assert probe.failed == [] and probe.pings == 2


def test_a_pong_before_any_keepalive_ping_answers_nothing_in_advance() -> None:
    """A pong that came before the keepalive ping went out does not answer it: the peer must
    answer each ping."""
    probe = Probe(1.0, 1.0)
    probe._pong(KEEPALIVE_PAYLOAD)
    probe.keepalive_due(100, 1.0)
    assert probe.keepalive_due(101, 1.0) is None
    assert probe.failed and probe.failed[0][0] == CloseCode.INTERNAL_ERROR


def test_without_ping_timeout_pings_go_on_unanswered() -> None:
    """ping_timeout off: the connection is pinged every interval and never failed for a
    missing pong."""
    probe = Probe(2.0, None)
    due = 100
    for _ in range(5):
        nxt = probe.keepalive_due(due, 1.0)
        assert nxt == due + 2
        due = nxt
    assert probe.pings == 5 and probe.failed == []


def test_closed_connection_leaves_the_wheel_without_a_ping() -> None:
    """A connection that is closing or lost is not pinged and is not visited again."""
    probe = Probe(1.0, 1.0)
    probe._conn.state = State.CLOSING
    assert probe.keepalive_due(100, 1.0) is None
    probe = Probe(1.0, 1.0)
    probe._transport = None
    assert probe.keepalive_due(100, 1.0) is None
    assert probe.pings == 0


def _read(probe: Probe, data: bytes) -> int:
    probe._rbuf[: len(data)] = data
    return len(data)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def test_a_lone_pong_answers_keepalive_without_the_parser() -> None:
    """The pong to a keepalive ping, alone in a read, answers it on the short path."""
    probe = Probe(1.0, 1.0)
    probe.keepalive_due(100, 1.0)
    assert probe._pong_only(_read(probe, _client_frame(0xA, KEEPALIVE_PAYLOAD)))
    assert probe.keepalive_due(101, 1.0) == 102 and probe.failed == []


@pytest.mark.parametrize(
    "case", ["unmasked", "two frames", "partial", "app ping waits", "mid-frame", "closing"]
)
def test_anything_but_a_lone_client_pong_goes_to_the_parser(case: str) -> None:
    """The short path takes only what the parser would take as one complete pong: an
    unmasked one (1002, RFC 6455 5.1), one followed by more bytes, half a frame, a read in the
    middle of another frame, or any pong while the application's ping() waits for it (it
    needs its payload) go to the parser; a connection no longer open ignores it there too."""
    probe = Probe(1.0, 1.0)
    probe.keepalive_due(100, 1.0)
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
    assert probe._ka_sent == 100  # not answered by the short path
