"""Smoke runs of the scale scripts (bench/idle.py, bench/cpu.py): seconds, no timing checks."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_idle_smoke_holds_every_connection_and_reports_the_spread() -> None:
    result = subprocess.run(
        [sys.executable, "bench/idle.py", "--smoke", "--workers", "2", "--json-only"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["connections"] == 200 and report["failures"] == 0
    assert sum(report["per_worker"]) == 200 and len(report["per_worker"]) == 2
    assert report["rss_per_conn_bytes"] > 0


def test_cpu_smoke_measures_every_worker_count() -> None:
    result = subprocess.run(
        [sys.executable, "bench/cpu.py", "--smoke"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    runs = [line for line in lines if "messages" in line]
    summaries = [line for line in lines if "median_cpu_s_per_million" in line]
    assert [r["workers"] for r in runs] == [1, 2]
    assert all(r["messages"] > 0 and r["server_cpu_s"] >= 0 for r in runs)
    # Read and write system calls are counted from /proc: an echo needs at least one of each
    # per batch of frames in flight.
    assert all(r["syscr_per_1000"] > 0 and r["syscw_per_1000"] > 0 for r in runs)
    assert [s["workers"] for s in summaries] == [1, 2]
