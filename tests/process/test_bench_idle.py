"""Smoke run of bench/idle.py: the scale script keeps working (seconds, no timing checks)."""

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
