"""bench's Python floors (bench/servers/uvloop_echo.py): a raw TCP echo in Python on uvloop,
on uvloop's transport and on a transport of its own. Each echoes what the generator sends,
verified byte for byte, small and 1 MiB messages; neither is a default server or a peer.

Seconds, not a measurement: tiny durations, no timing thresholds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.build import compiler
from bench.servers import DEFAULT_SERVERS, FLOORS, PEER_EXCLUDE

from .test_asgi_servers import _bench

pytestmark = pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")


def test_both_floors_echo_every_byte(tmp_path: Path) -> None:
    """b (100 connections, 64 B) and d (1 MiB: partial sends, the reader's pending bytes):
    every echo verified by the generator."""
    runs = _bench(tmp_path, sorted(FLOORS), "--scenarios", "b,d", "--duration", "0.2")
    for scenario in ("b", "d"):
        for name in FLOORS:
            run = runs[scenario, name]
            assert run["ok"], run
            assert run["loadgen"]["errors"] == 0
            assert run["loadgen"]["verified"] >= run["loadgen"]["msgs"] > 0


def test_floors_are_neither_defaults_nor_peers() -> None:
    """The floors run only when asked for and never stand in a ratio's denominator."""
    assert FLOORS.isdisjoint(DEFAULT_SERVERS)
    assert FLOORS <= PEER_EXCLUDE


def test_floors_run_as_two_serving_processes(tmp_path: Path) -> None:
    """--workers 2: each floor is two SO_REUSEPORT processes (as picows and aiohttp are), both
    of which served: the floor of the two-process runs."""
    runs = _bench(
        tmp_path, sorted(FLOORS), "--scenarios", "b", "--duration", "0.3", "--workers", "2"
    )
    for name in FLOORS:
        run = runs["b", name]
        assert run["ok"], run
        busy = [c for c in run["server_stats"]["cpu_by_process"].values() if c > 0.02]
        assert len(busy) == 2, (name, run["server_stats"])
