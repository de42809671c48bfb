"""Faults under continuous load, counted (the seconds-long version of `python -m bench.faults`).

Forty connections of the `websockets` library echo continuously against two workers while a
worker is killed, stopped, or the master reloads; every echo is checked against what was sent.
test_arbiter.py covers the same faults with light traffic; here the point is the count: zero
messages lost or corrupted where the server promises it, every victim reconnected, zero failed
handshakes through a reload. No timing is asserted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.faults import run_scenario

from .helpers import workers

PID_APP = "tests.process.apps:report_pid"  # the same protocol as bench.faults:pid_echo
CONNECTIONS = 40


def run(server: Any, name: str, **options: Any) -> dict[str, Any]:
    report = asyncio.run(
        run_scenario(
            name, server.url, server.pid, connections=CONNECTIONS, workers=2, duration=2, **options
        )
    )
    print(report)
    return report


def test_kill_9_loses_nothing_on_the_other_worker(start_server: Any) -> None:
    """kill -9 of the worker holding most connections: every message on the other worker's
    connections is echoed intact; the victim's connections end (none hangs) and reconnect."""
    server = start_server(PID_APP, workers=2)
    workers(server, 2)
    report = run(server, "kill")
    victims, others = report["victim_connections"], report["other_connections"]
    assert victims["connections"] and others["connections"], "both workers must hold connections"
    assert others["sent"] == others["echoed"] > 0
    assert (others["lost"], others["corrupted"], others["hung"]) == (0, 0, 0)
    assert victims["hung"] == 0 and victims["ended_by"] == {"1006": victims["connections"]}
    assert report["victims_reconnected"] == victims["connections"]
    assert report["after_kill_connections"]["lost"] == 0
    assert report["failed_handshakes"] == 0, report["failures"]
    assert report["ok"]


def test_sigstop_stalls_one_worker_and_the_master_replaces_it(start_server: Any) -> None:
    """SIGSTOP of a worker: its connections stall while the other worker's keep echoing; after
    worker_timeout the master kills it, its clients see the connection end and reconnect."""
    server = start_server(PID_APP, workers=2, worker_timeout=2)
    workers(server, 2)
    report = run(server, "stop", worker_timeout=2)
    victims, others = report["victim_connections"], report["other_connections"]
    assert victims["connections"] and others["connections"], "both workers must hold connections"
    assert report["victims_stalled_while_stopped"] == victims["connections"]
    assert report["others_progressed_while_stopped"] == others["connections"]
    assert (others["lost"], others["corrupted"], others["hung"]) == (0, 0, 0)
    assert report["victims_reconnected"] == victims["connections"]
    assert "timed out: no heartbeat" in server.stderr()
    assert report["ok"]


def test_hup_under_load_fails_no_handshake_and_loses_nothing(start_server: Any) -> None:
    """HUP while forty connections echo and four clients churn: no connection attempt fails;
    the old workers close their connections with 1001 (clean), nothing is lost or corrupted on
    any connection while it is open, and the reconnected ones echo on the new workers."""
    server = start_server(PID_APP, workers=2)
    workers(server, 2)
    report = run(server, "hup", churn=4)
    old, new = report["old_worker_connections"], report["new_worker_connections"]
    assert report["failed_handshakes"] == 0, report["failures"]
    assert report["attempts"] > CONNECTIONS and report["churn_connections"] > 0
    assert old["ended_by"] == {"1001": old["connections"]}
    assert (old["lost"], old["corrupted"], old["hung"]) == (0, 0, 0)
    assert old["unanswered"] <= old["connections"]  # at most the window (1) per connection
    assert new["connections"] >= CONNECTIONS and new["echoed"] > 0
    assert (new["lost"], new["corrupted"], new["hung"]) == (0, 0, 0)
    assert report["ok"]
