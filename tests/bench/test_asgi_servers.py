"""bench's ASGI servers (bench/servers/__init__.py ASGI_SERVERS): each one starts the same
Starlette echo app, every echo comes back verified, and `--workers 2` runs each peer's own
multi-process mode with the CPU of all its processes counted.

Seconds, not a measurement: tiny durations, no timing thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.build import compiler
from bench.servers import ASGI_SERVERS, SERVERS

from .test_smoke import run_bench

pytestmark = pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")


def _installed(*names: str) -> list[str]:
    """The servers of `names` whose modules are all importable here."""
    return [n for n in names if not SERVERS[n].missing()]


def _bench(out: Path, servers: list[str], *options: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A short `python -m bench run` of `servers`: its runs by (scenario, server)."""
    proc = run_bench(
        "run", "--servers", ",".join(servers), *options,
        "--warmup", "0.1", "--no-plots", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    return {(r["scenario"], r["server"]): r for r in data["runs"]}


def test_every_asgi_server_echoes_large_messages(tmp_path: Path) -> None:
    """One worker each: fastws (plain and zero-copy app), uvicorn's three WebSocket
    implementations, Hypercorn and Granian serve the Starlette echo app, and the generator
    verifies every 1 MiB binary echo (d) byte for byte (and the 64-byte text echo of the
    warm-up before it)."""
    servers = _installed(*(s.name for s in ASGI_SERVERS))
    assert "fastws-asgi" in servers
    runs = _bench(tmp_path, servers, "--scenarios", "d", "--duration", "0.2")
    for name in servers:
        run = runs["d", name]
        assert run["ok"], run
        assert run["loadgen"]["errors"] == 0
        assert run["loadgen"]["verified"] >= run["loadgen"]["msgs"] > 0


def test_two_workers_run_each_asgi_server_in_its_own_multiprocess_mode(tmp_path: Path) -> None:
    """--workers 2: fastws's master, uvicorn's supervisor, Hypercorn's and Granian's own
    --workers each run two serving processes under one parent. The run's CPU figures are
    summed over the whole process tree: the parent and both workers are in it, and both
    workers served (used CPU) under 100 connections. raw-tcp, the ceiling, runs as two C
    echo processes, each on its own SO_REUSEPORT socket."""
    servers = _installed(
        "fastws-asgi", "uvicorn-websockets-sansio", "hypercorn", "granian", "raw-tcp"
    )
    runs = _bench(tmp_path, servers, "--scenarios", "b", "--workers", "2", "--duration", "0.3")
    for name in servers:
        run = runs["b", name]
        assert run["ok"], run
        by_process = {int(pid): cpu for pid, cpu in run["server_stats"]["cpu_by_process"].items()}
        busy = [pid for pid, cpu in by_process.items() if cpu > 0.02]
        assert len(busy) >= 2, (name, by_process)
        # a master (or supervisor) above the workers: more processes than serving ones
        # (raw-tcp's first process serves too)
        assert len(by_process) >= (2 if name == "raw-tcp" else 3), (name, by_process)
        assert run["metrics"]["server_cpu"] > 0
    assert "**2 server processes**" in (tmp_path / "results.md").read_text()
