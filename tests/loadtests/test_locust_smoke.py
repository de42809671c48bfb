"""A real headless locust, a few seconds long, with fastws.locust's WebSocketUser (through
loadtests/echo.py) against a real fastws server: what it reports in its CSV files.

Locust runs as a subprocess: importing it monkey-patches the process with gevent.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

# Never import locust here: importing it monkey-patches this process with gevent, which breaks
# every later test that uses threads or sockets.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed", allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = REPO_ROOT / "loadtests"


def run_locust(
    tmp_path: Path, url: str, *args: str, locustfile: str = "echo.py"
) -> tuple[int, dict[str, dict[str, str]], str]:
    """Run locust headless; return its exit code, the _stats.csv rows by name, and its log."""
    files = ",".join(str(LOADTESTS / name) for name in locustfile.split(","))
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        files,
        "--host",
        url,
        "--headless",
        "--only-summary",
        "--csv",
        str(tmp_path / "smoke"),
        "--exit-code-on-error",
        "1",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    with open(tmp_path / "smoke_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    return proc.returncode, rows, proc.stderr + proc.stdout


def test_echo_counts_requests_without_failures(tmp_path: Path, echo_server: ServerProcess) -> None:
    """Five users for three seconds: every user's connect and its echoes are counted as WS
    requests with a round trip and the echoed length, and nothing failed (exit code 0)."""
    code, rows, log = run_locust(
        tmp_path, echo_server.url, "-u", "5", "-r", "5", "-t", "3s", "--ws-rate", "5"
    )
    assert code == 0, log
    connect, echo, total = rows["connect"], rows["echo"], rows["Aggregated"]
    assert connect["Type"] == echo["Type"] == "WS"
    assert int(connect["Request Count"]) == 5, log
    assert int(echo["Request Count"]) >= 10, log
    assert int(total["Failure Count"]) == 0, log
    # The echo carries the id prefix "#<id>|" plus the 32 characters sent.
    assert float(echo["Average Content Size"]) > 32
    assert float(echo["Max Response Time"]) > 0


def test_refused_handshake_is_reported_as_failures(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A server answering the upgrade with 403 shows up as failed connects naming the status,
    and locust exits non-zero: a broken server is not silence."""
    server = start_server(process_request="tests.apps:deny_unless_token")
    code, rows, log = run_locust(tmp_path, server.url, "-u", "3", "-r", "3", "-t", "2s")
    assert code == 1, log
    assert int(rows["connect"]["Failure Count"]) >= 3
    assert int(rows["connect"]["Request Count"]) == int(rows["connect"]["Failure Count"])
    with open(tmp_path / "smoke_failures.csv", newline="") as f:
        errors = [row["Error"] for row in csv.DictReader(f)]
    assert any("HTTP 403" in error for error in errors), errors


def test_server_close_1011_is_reported_as_failures(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A server closing with 1011 after the first message fails the close (with code and
    reason) and the echo that was waiting, while the connects themselves succeeded."""
    server = start_server(app="tests.apps:close_1011_on_message")
    code, rows, log = run_locust(
        tmp_path, server.url, "-u", "3", "-r", "3", "-t", "2s", "--ws-rate", "5"
    )
    assert code == 1, log
    assert int(rows["close"]["Failure Count"]) >= 3
    assert int(rows["echo"]["Failure Count"]) >= 3
    assert int(rows["connect"]["Failure Count"]) == 0
    with open(tmp_path / "smoke_failures.csv", newline="") as f:
        errors = [row["Error"] for row in csv.DictReader(f)]
    assert any("1011 backend down" in error for error in errors), errors


def test_step_shape_waits_for_connected_users(tmp_path: Path, echo_server: ServerProcess) -> None:
    """The stepped shape holds each step only once that many users are connected, then stops
    by itself after the last step."""
    step_log = tmp_path / "steps.jsonl"
    code, rows, log = run_locust(
        tmp_path,
        echo_server.url,
        "--steps",
        "3,6",
        "--step-hold",
        "1",
        "--step-rate",
        "20",
        "--step-log",
        str(step_log),
        locustfile="echo.py,shape.py",
    )
    assert code == 0, log
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    holds = [e for e in events if e["event"] == "hold"]
    assert [(e["users"], e["connected"] >= e["users"]) for e in holds] == [(3, True), (6, True)]
    assert [e["event"] for e in events][-1] == "end"
    assert int(rows["connect"]["Request Count"]) == 6
