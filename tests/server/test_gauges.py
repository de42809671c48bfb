"""fastws/server/gauges.py: the pass over a worker's connections for the write-buffer gauges
is spaced out so that all the workers sharing the machine's cores together spend at most
MAX_SHARE of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fastws.server import gauges


class _Clock:
    """time.monotonic for the sampler: each pass over the connections "takes" 1 ms."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def _server(workers: int, walked: list[int]) -> Any:
    conn = SimpleNamespace(
        outbox=SimpleNamespace(in_transport=lambda: 10),
        writing_paused=False,
        protocol=SimpleNamespace(blocked=None),  # not waiting for memory
    )

    def each_connection() -> Any:
        walked.append(1)
        _CLOCK.now += 0.001
        return iter([conn] * 3)

    return SimpleNamespace(
        config=SimpleNamespace(workers=workers, max_connections=None),
        budget=SimpleNamespace(held=0, limit=0),
        each_connection=each_connection,
    )


_CLOCK = _Clock()


@pytest.mark.parametrize(("workers", "walks"), [(1, 10), (2, 10), (64, 1)])
def test_the_pass_is_spaced_out_by_the_workers_per_core(
    monkeypatch: pytest.MonkeyPatch, workers: int, walks: int
) -> None:
    """On 2 cores, a worker among 1 or 2 walks its connections at every beat (a 1 ms pass
    needs 0.1 s of spacing); one among 64 (a million connections' worth of workers) walks
    only every ~3.2 s, so that together they still spend 1 % of the machine."""
    monkeypatch.setattr(gauges.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(gauges.time, "monotonic", _CLOCK.monotonic)
    walked: list[int] = []
    sample = gauges.GaugeSampler(_server(workers, walked))
    for _ in range(10):  # ten heartbeats, 0.25 s apart
        sample()
        _CLOCK.now += 0.25
    assert len(walked) == walks
