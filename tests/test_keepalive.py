"""The per-loop keepalive wheel: every connection pinged once per interval from one timer."""

from __future__ import annotations

import asyncio
import time

from fastws.keepalive import KeepaliveWheel, wheel


class FakeConnection:
    def __init__(self, loop: asyncio.AbstractEventLoop, fail: bool = False) -> None:
        self.loop = loop
        self.pinged_at: list[float] = []
        self.fail = fail

    def keepalive_due(self) -> None:
        self.pinged_at.append(self.loop.time())
        if self.fail:
            raise RuntimeError("broken transport")


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
        def keepalive_due(self) -> None:
            super().keepalive_due()
            time.sleep(0.002)

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
