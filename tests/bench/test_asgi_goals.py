"""bench/asgi_goals.py: issue 19's goals read from a real run, and the syscall count that
shows where the ceiling is.

Seconds, not a measurement: tiny durations, no timing thresholds (syscalls are counted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.asgi_goals import Ratios, ratios, strace_counts, verdict
from bench.build import compiler

from .test_smoke import REPO, run_bench

pytestmark = pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")


def _summary(**rates: float) -> dict[str, dict[str, dict[str, float]]]:
    """A run's medians for scenario a: server -> msgs/s and msgs per CPU-s (the same)."""
    by = {srv: {"msgs_per_s": v, "msgs_per_cpu_s": v} for srv, v in rates.items()}
    return {"a": by}


def test_ratios_take_the_best_uvicorn_and_raw_tcp_as_the_ceiling() -> None:
    """Each figure is divided by the best of uvicorn's protocols in that run, and a goal
    that raw-tcp itself misses is called unreachable, not just missed."""
    rows = ratios(
        _summary(**{
            "fastws-asgi": 150.0, "uvicorn-websockets": 60.0,
            "uvicorn-websockets-sansio": 100.0, "granian": 120.0, "raw-tcp": 130.0,
        })
    )  # fmt: skip
    rate = next(r for r in rows if r.figure == "rate")
    assert rate.uvicorn == "uvicorn-websockets-sansio"
    assert rate.fastws == pytest.approx(1.5)
    assert rate.granian == pytest.approx(1.25)
    assert rate.ceiling == pytest.approx(1.3)
    assert verdict(rate) == "not met; unreachable: raw-tcp itself 1.30x"


@pytest.mark.parametrize(
    ("fastws", "granian", "ceiling", "expected"),
    [
        (2.5, 1.1, 9.0, "met"),
        (2.5, 0.9, 9.0, "2x met; below Granian"),
        (2.5, None, None, "2x met; Granian not in this run"),
        (1.5, 1.1, 2.8, "not met"),
        (1.5, 1.1, None, "not met"),
    ],
)
def test_verdict(
    fastws: float, granian: float | None, ceiling: float | None, expected: str
) -> None:
    """a-c: met only at >= 2x uvicorn and >= Granian; a miss with headroom below raw-tcp's
    ceiling (or no ceiling measured) is a plain miss."""
    assert verdict(Ratios("b", "rate", "uvicorn", fastws, None, granian, ceiling)) == expected


def test_strace_table_is_parsed_with_and_without_errors() -> None:
    """strace -c's errors column may be empty: calls are the fourth column either way."""
    text = (
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 34.57    0.084901          23      3569           write\n"
        " 32.68    0.080265          22      3570        12 read\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.245611          22     7139        12 total\n"
    )
    assert strace_counts(text) == {"write": 3569, "read": 3570}


def _can_trace() -> bool:
    """strace can attach to a process that is not its child: root, or Yama's ptrace_scope 0."""
    if shutil.which("strace") is None:
        return False
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        scope = 0
    return os.geteuid() == 0 or scope == 0


@pytest.mark.skipif(not _can_trace(), reason="needs strace, allowed to attach")
def test_fastws_asgi_makes_only_raw_tcps_syscalls_per_message(tmp_path: Path) -> None:
    """On a (one 64-byte message in flight) the Starlette echo on fastws costs the kernel no
    more than the C echo does: one read, one write, at most one epoll wait per message, as
    counted by strace on the server's processes (uvicorn makes six: it pauses and resumes
    reading for each message). The goals table is written from the run."""
    proc = run_bench(
        "run", "--servers", "fastws-asgi,raw-tcp", "--scenarios", "a", "--duration", "0.2",
        "--warmup", "0.1", "--no-plots", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    goals = subprocess.run(
        [sys.executable, "-m", "bench.asgi_goals", str(tmp_path), "--no-plot", "--syscalls",
         "--profile-scenarios", "a", "--profile-servers", "fastws-asgi,raw-tcp"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert goals.returncode == 0, goals.stderr
    text = (tmp_path / "goals.md").read_text()
    assert "| a | 2x uvicorn, >= Granian | rate |" in text
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:4]
        for line in text.splitlines()
        if line.startswith(("| fastws-asgi |", "| raw-tcp |"))
    }
    total, which = rows["fastws-asgi"]
    assert 2.0 <= float(total) <= 3.3, text
    assert "read 1.0" in which and "write 1.0" in which, text
    assert float(rows["raw-tcp"][0]) >= 2.0, text
