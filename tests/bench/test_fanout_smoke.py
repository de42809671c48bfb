"""Smoke test of bench/fanout.py: it runs, every subscriber gets every message, in order.

Seconds, not a measurement (200 subscribers, 20 messages; no timing thresholds). The figures
come from `python -m bench.fanout --subscribers 10000 ...` (see the README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ["--servers", "fastws,fastws-direct,websockets"],
        ["--servers", "fastws", "--pipelined", "--rate", "200"],
    ],
    ids=["burst", "pipelined-paced"],
)
def test_fanout_smoke(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--smoke", "--json", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert rows and all(r["complete"] == r["subscribers"] == 200 for r in rows)
    assert all(r["verified"] for r in rows)  # byte-exact stream on one connection per process
    assert "| server | deliveries/s |" in proc.stdout
