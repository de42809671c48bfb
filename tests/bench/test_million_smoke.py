"""Smoke test of bench/million.py (issue 21's harness) and bench/million_memory.py.

Seconds, not a measurement: 3,000 connections over 4 workers from 3 load generator processes
(bench/c/million.c, compiled here), no timing thresholds. The figures come from
`python -m bench.million` (see the README's "One million connections").
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("batch", [None, "0"], ids=["batched", "at-once"])
def test_million_smoke(tmp_path: Path, batch: str | None) -> None:
    """The whole run works end to end at small scale: every connection opens with a real
    handshake and stays open, the sample echoes come back byte-exactly, keepalive pings are
    answered, every connection gets every broadcast, the graceful stop closes every one with
    a closing handshake, the worker spread, memory and per-ping figures are there, the results
    folder is written, and nothing the harness started is left running. Both ways of generating load: generators that batch their passes
    (--batch-ms's default) with the echo sample in a process of its own, and generators that
    answer at once (--batch-ms 0) with the sample spread over them."""
    out = tmp_path / "run"
    extra = [] if batch is None else ["--batch-ms", batch]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.million",
            "--smoke",
            "--no-sysctl",
            "--out",
            str(out),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "result.json").read_text())
    n = r["plan"]["connections"]
    at_n = r["at_n"]
    assert at_n["connections"] == at_n["opened"] == n and at_n["failed"] == 0
    assert at_n["workers"] == 4 and sum(at_n["per_worker"]) == n
    assert at_n["server_rss_per_conn"] > 0 and at_n["kernel_socket_slab_per_conn"] > 0
    assert r["hold"]["connections_lost"] == 0 and r["hold"]["pings"] > 0
    gaps = r["hold"]["ping_gaps"]  # the time between pings, from every generator
    assert gaps["generators_reporting"] == r["clients"]["processes"] and gaps["gaps"] > 0
    assert gaps["max_s"] > 0 and 0 <= gaps["over"] <= gaps["gaps"]
    assert gaps["quantiles_s"]["count"] == gaps["gaps"]
    # /metrics and the dashboard's feed with every connection open: all workers, all
    # connections (the viewer not among them)
    mo = r["monitoring"]
    assert mo["metrics_workers"] == mo["dashboard_workers"] == 4, mo
    assert mo["metrics_connections_open"] == mo["dashboard_connections_open"] == n, mo
    # the server's side, from /metrics: its keepalive wheels visited connections
    assert r["hold"]["keepalive_visits"] > 0
    assert 0 <= r["hold"]["keepalive_visits_late"] <= r["hold"]["keepalive_visits"]
    clients = r["clients"]
    # batched: 3 generator processes + the sample's own
    assert clients["processes"] == clients["reported"] == (4 if r["plan"]["batch_ms"] else 3)
    assert (r["plan"]["batch_ms"] > 0) == (batch is None)
    per_ping = r["hold"]["per_ping"]
    assert per_ping["server"]["cpu_us"] > 0 and per_ping["clients"]["cpu_us"] > 0
    assert per_ping["tcp"]["OutSegs"] > 1  # a ping and its pong (machine-wide, so roughly)
    assert clients["echo_ok"] > 0 and clients["echo_bad"] == 0
    # The graceful stop (SIGTERM) with every connection open: each got Close 1001, answered
    # it, and the server then closed TCP; no worker needed killing.
    sd = r["shutdown"]
    assert sd["master_exited"] and sd["exit_code"] == 0 and sd["workers_killed"] == 0
    assert sd["close_codes"] == {"1001": n} and sd["then_tcp_closed_by_server"] == n
    assert sd["then_reset"] == sd["without_close"] == 0
    assert clients["server_closed"] == n  # all of them at the stop, none before
    b = r["broadcast"]
    assert b["deliveries"] == b["expected_deliveries"] == n * b["messages"]
    assert all(row["deliveries"] == n for row in b["per_message"])
    assert clients["bcast_bad"] == 0
    assert r["leftover_processes"] == []
    assert (out / "report.md").read_text().startswith("# fastws: 3,000 concurrent")
    if importlib.util.find_spec("matplotlib") is not None:  # plots need the bench extra
        assert (out / "ramp.png").stat().st_size > 0


def test_million_memory_breakdown(tmp_path: Path) -> None:
    """The per-connection memory breakdown runs and accounts for the connection's objects:
    tracemalloc attributes allocations to fastws lines, and getsizeof finds the handler's
    task and coroutine frames, the request headers and the protocol core."""
    out = tmp_path / "memory.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.million_memory",
            "--app",
            "coroutine",
            "--connections",
            "300",
            "--settle",
            "0.5",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["connections"] == 300 and r["tracemalloc_per_conn"] > 0
    assert any(
        row["where"].startswith(("websocket.py", "server/")) for row in r["by_line_per_conn"]
    )
    objects = r["one_connection_getsizeof"]
    assert objects["handler coroutine frames (chain)"] > 0
    assert objects["  request headers (Headers + list + tuples + str), deep"] > 0
    assert objects["Connection (protocol core), deep"] > 0


def _can_make_netns() -> bool:
    knob = Path("/proc/sys/net/ipv4/tcp_child_ehash_entries")
    if os.geteuid() != 0 or not knob.exists() or shutil.which("unshare") is None:
        return False
    tried = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return tried.returncode == 0  # a container may forbid it


@pytest.mark.skipif(not _can_make_netns(), reason="needs root, unshare and Linux >= 6.1")
def test_million_smoke_in_its_own_network_namespace(tmp_path: Path) -> None:
    """--ehash runs the whole benchmark again in a network namespace of its own whose TCP
    established hash has that many buckets (the host's is sized at boot), says so in the
    report, and leaves the host's setting as it was."""
    knob = Path("/proc/sys/net/ipv4/tcp_child_ehash_entries")
    before = knob.read_text()
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.million", "--smoke", "--no-sysctl", "--ehash", "65536",
         "--broadcasts", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert knob.read_text() == before
    r = json.loads((out / "result.json").read_text())
    assert r["at_n"]["connections"] == r["plan"]["connections"]
    assert r["kernel"]["before"]["net.ipv4.tcp_ehash_entries"] == "65536"
    assert any("network namespace of its own" in note for note in r["kernel"]["notes"])
    assert r["leftover_processes"] == []
