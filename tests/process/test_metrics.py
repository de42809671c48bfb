"""The monitoring side: GET /healthz and /metrics on the WebSocket port, 503 at
max_connections, and `fastws status`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import websockets

from tests.conftest import REPO_ROOT

from .helpers import http_get, metrics, slot_of, total, wait_for, workers


def test_healthz_answers_for_the_whole_server(start_server: Any) -> None:
    """GET /healthz (no Upgrade) is plain HTTP 200 with the workers' state, from any worker."""
    server = start_server(workers=2)
    workers(server, 2)
    status, headers, body = http_get(server, "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "workers": 2, "ready": 2, "connections": 0}


def test_metrics_is_prometheus_text_with_worker_labels(start_server: Any) -> None:
    """Each series carries the worker slot (0, 1, ...), never a pid; no unlabelled total
    beside them (a `sum()` would count it twice)."""
    server = start_server(workers=2)
    workers(server, 2)
    status, headers, body = http_get(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE fastws_messages_in_total counter" in text
    assert "# TYPE fastws_connections_open gauge" in text
    for slot in ("0", "1"):
        assert f'fastws_handshakes_total{{worker="{slot}"}}' in text
    assert "\nfastws_handshakes_total " not in text


def test_a_websocket_to_the_metrics_path_is_still_a_websocket(start_server: Any) -> None:
    """Only requests without Upgrade are monitoring requests; the app owns every path."""
    server = start_server(workers=1)

    async def main() -> str:
        async with websockets.connect(server.url_for("/metrics")) as ws:
            await ws.send("echo")
            return str(await ws.recv())

    assert asyncio.run(main()) == "echo"


def test_max_connections_answers_503_with_retry_after(start_server: Any) -> None:
    """Above max_connections per worker, a handshake gets 503 + Retry-After; below, 101."""
    server = start_server(workers=1, max_connections=3)
    workers(server, 1)

    async def main() -> None:
        held = [await websockets.connect(server.url) for _ in range(3)]
        try:
            await websockets.connect(server.url)
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code == 503
            assert exc.response.headers["Retry-After"] == "1"
        else:
            raise AssertionError("the fourth connection was accepted")
        await held.pop().close()
        async with websockets.connect(server.url) as ws:  # room again
            await ws.send("ok")
            assert await ws.recv() == "ok"
        for ws in held:
            await ws.close()

    asyncio.run(main())
    samples = wait_for(lambda: (s := metrics(server)) and total(s, "fastws_busy_total") and s)
    assert total(samples, "fastws_busy_total") == 1
    assert "503 max_connections (3) reached" in server.stderr()


def test_status_prints_a_table_of_workers(start_server: Any) -> None:
    """`fastws status --port P` shows one row per worker slot (with its pid) and the totals."""
    server = start_server(workers=2)
    pids = workers(server, 2)

    async def main() -> None:
        async with websockets.connect(server.url) as ws:
            await ws.send("x")
            await ws.recv()

    asyncio.run(main())
    wait_for(lambda: total(metrics(server), "fastws_messages_in_total") == 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "fastws", "status", "--port", str(server.port)],
        capture_output=True,
        text=True,
        env=dict(env, PYTHONPATH=str(REPO_ROOT)),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["worker", "pid", "state", "uptime"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {rows["0"][1], rows["1"][1]} == {str(pid) for pid in pids}
    assert rows["total"][1:4] == ["0", "1", "1"]  # conns, handshakes, msgs in
    assert lines[-1] == "close codes: 1000: 1"


def test_status_without_a_server_fails_with_one_line() -> None:
    from tests.conftest import free_port

    result = subprocess.run(
        [sys.executable, "-m", "fastws", "status", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("fastws status: cannot read metrics from 127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1


def test_single_process_mode_reports_itself(start_server: Any) -> None:
    """--workers 0 (no master, no scoreboard): /metrics reports the one process's counters."""
    server = start_server(workers=0)

    async def main() -> None:
        async with websockets.connect(server.url) as ws:
            await ws.send("x")
            await ws.recv()

    asyncio.run(main())
    samples = metrics(server)
    assert total(samples, "fastws_workers") == 1
    assert total(samples, "fastws_messages_in_total") == 1
    assert total(samples, "fastws_messages_in_total", worker="0") == 1
    assert total(samples, "fastws_worker_info", worker="0", pid=str(server.pid)) == 1


# --- budgets: limits and what is held against them ------------------------------------------


def gauge(server: Any, name: str, **labels: str) -> float:
    return total(metrics(server), f"fastws_{name}", **labels)


def test_budgets_show_the_configured_limits_per_worker_and_in_total(start_server: Any) -> None:
    """max_connections and max_message_memory appear per worker and summed for the server."""
    server = start_server(workers=2, max_connections=50, max_message_memory="64MiB")
    pids = workers(server, 2)
    samples = metrics(server)
    for pid in pids:
        slot = slot_of(samples, pid)
        assert total(samples, "fastws_max_connections", worker=slot) == 50
        assert total(samples, "fastws_message_memory_limit_bytes", worker=slot) == 64 << 20
    assert total(samples, "fastws_max_connections") == 100
    assert total(samples, "fastws_message_memory_limit_bytes") == 128 << 20
    assert total(samples, "fastws_message_memory_bytes") == 0
    assert total(samples, "fastws_write_buffer_bytes") == 0


def test_message_memory_and_waiting_connections_move(start_server: Any) -> None:
    """A large frame that has started arriving holds its declared size of the message budget;
    a second one that does not fit waits (reading paused); both show in /metrics, and both
    gauges return to 0 once the messages are complete and echoed."""
    from tests.wire import OP_BINARY, WireClient

    mib = 1 << 20
    server = start_server(workers=1, max_message_memory="4MiB")
    workers(server, 1)
    with WireClient(server.port) as first, WireClient(server.port) as second:
        first.handshake()
        second.handshake()
        first.send_frame(OP_BINARY, b"", length_override=4 * mib, masking_key=b"\0\0\0\0")
        first.send_raw(b"a" * mib)
        wait_for(lambda: gauge(server, "message_memory_bytes") == 4 * mib, 5, "4 MiB held")
        second.send_frame(OP_BINARY, b"", length_override=2 * mib, masking_key=b"\0\0\0\0")
        second.send_raw(b"b" * 1000)
        wait_for(lambda: gauge(server, "connections_waiting_for_memory") == 1, 5, "one waiting")
        first.send_raw(b"a" * (3 * mib))
        assert first.recv_message() == (OP_BINARY, b"a" * (4 * mib))
        second.send_raw(b"b" * (2 * mib - 1000))
        assert second.recv_message() == (OP_BINARY, b"b" * (2 * mib))
        wait_for(
            lambda: (
                gauge(server, "message_memory_bytes") == 0
                and gauge(server, "connections_waiting_for_memory") == 0
            ),
            5,
            "the budget to be free again",
        )


def test_write_buffer_of_a_client_that_does_not_read(start_server: Any) -> None:
    """A client that sends 8 MiB and reads nothing: its echo waits in the server's write
    buffer, which /metrics shows (bytes, and one connection over write_limit); once the
    client goes, both return to 0."""
    import socket

    from tests.wire import OP_BINARY, WireClient

    server = start_server(workers=1, write_limit="64KiB")
    workers(server, 1)
    with WireClient(server.port) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.handshake()
        client.send_frame(OP_BINARY, b"x" * (8 << 20))
        wait_for(lambda: gauge(server, "connections_writing_paused") == 1, 5, "writing paused")
        buffered = gauge(server, "write_buffer_bytes")
        assert 64 << 10 < buffered <= 8 << 20
    wait_for(
        lambda: (
            gauge(server, "write_buffer_bytes") == 0
            and gauge(server, "connections_writing_paused") == 0
        ),
        5,
        "the write buffer to be gone",
    )


# --- Prometheus conventions on a real server ------------------------------------------------


def test_metrics_parse_and_keep_their_series_across_a_worker_restart(start_server: Any) -> None:
    """prometheus_client parses /metrics; after kill -9 of a worker and its replacement, the
    same `worker` series exist (slots, not pids) and the server's message count, the sum of
    the series, has not gone backwards."""
    from prometheus_client.parser import text_string_to_metric_families

    server = start_server(workers=2)
    pids = workers(server, 2)

    async def send(count: int) -> None:
        for _ in range(count):
            async with websockets.connect(server.url) as ws:
                await ws.send("x")
                await ws.recv()

    def families() -> dict[str, list[tuple[dict[str, str], float]]]:
        status, _, body = http_get(server, "/metrics")
        assert status == 200
        return {
            f.name: [(dict(s.labels), s.value) for s in f.samples]
            for f in text_string_to_metric_families(body.decode())
        }

    def messages_in(fams: dict[str, list[tuple[dict[str, str], float]]]) -> float:
        return sum(value for _, value in fams["fastws_messages_in"])

    asyncio.run(send(10))
    wait_for(lambda: messages_in(families()) == 10, what="10 messages counted")
    before = families()
    assert {labels["worker"] for labels, _ in before["fastws_messages_in"]} == {"0", "1"}
    victim = min(pids)
    os.kill(victim, 9)
    wait_for(lambda: (p := workers(server, 2)) and victim not in p, what="a replacement")
    after = families()
    assert {labels["worker"] for labels, _ in after["fastws_messages_in"]} == {"0", "1"}
    assert messages_in(after) == 10  # the dead worker's counts stay in its slot's series
    for samples in after.values():
        assert len({tuple(sorted(labels)) for labels, _ in samples}) <= 1
