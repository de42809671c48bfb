"""bench.split: per-process CPU, switches and connections of a run, as the report says.

Seconds, not a measurement: tiny durations, no timing thresholds.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from bench import split
from bench.build import compiler


def test_connections_by_pid_counts_each_process_sockets_on_the_port() -> None:
    """Only ESTABLISHED connections to the port, by the process that holds their socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in clients]
    try:
        assert split.connections_by_pid([os.getpid()], port) == {os.getpid(): 3}
    finally:
        for sock in [*clients, *accepted, listener]:
            sock.close()


@pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")
def test_two_workers_hold_every_connection_between_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fastws with --workers 2 under b: the 100 connections are held by the two workers
    (none by the master), both of which served."""
    out = tmp_path / "split.json"
    code = split.main(
        ["--servers", "fastws", "--scenario", "b", "--workers", "2", "--repeat", "1",
         "--duration", "1", "--warmup", "0.2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    (run,) = json.loads(out.read_text())["runs"]
    servers = [p for p in run["processes"].values() if p["role"] == "server"]
    assert len(servers) == 3  # the master and two workers
    held = sorted(p["connections"] for p in servers)
    assert held[0] == 0 and sum(held) == 100
    assert all(p["exec_ns"] > 0 for p in servers if p["connections"])
    assert "| fastws |" in capsys.readouterr().out
