"""loadtests/run.py end to end, at toy size: it starts a fastws server, runs locust with the
stepped shape over two source addresses, and writes its CSVs and report."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

# Never import locust here: importing it monkey-patches this process with gevent, which breaks
# every later test that uses threads or sockets (tests/hostile's probes hung).
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed", allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_runner_writes_steps_and_report(tmp_path: Path) -> None:
    """One held step of 4 users: steps.csv reports the 4 connections the server really had
    (counted from /proc/net/tcp, not from locust), no failures, memory and CPU sampled; the
    report names the server command and the locust exit code."""
    cmd = [
        sys.executable,
        str(REPO_ROOT / "loadtests" / "run.py"),
        "--server",
        "fastws",
        "--steps",
        "4",
        "--step-hold",
        "2",
        "--step-rate",
        "20",
        "--processes",
        "1",
        "--source-addresses",
        "127.0.0.2-127.0.0.3",
        "--out",
        str(tmp_path),
        "--name",
        "smoke",
        "--timeout",
        "120",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "smoke"
    with open(out / "steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [(s["server"], s["users"], s["connections"], s["failures"]) for s in steps] == [
        ("fastws", "4", "4", "0")
    ], proc.stdout
    assert float(steps[0]["server_rss_mib"]) > 0
    report = (out / "report.md").read_text()
    assert "fastws serve" in report and "locust exit code 0" in report
    with open(out / "timeline-fastws.csv", newline="") as f:
        assert any(int(row["requests"]) > 0 for row in csv.DictReader(f))
