"""The master and its workers, end to end: real processes, real signals, the `websockets` client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import websockets

from tests.conftest import REPO_ROOT, free_port

from .helpers import alive, children, metrics, total, wait_for, workers

PID_APP = "tests.process.apps:report_pid"


async def open_clients(url: str, count: int) -> list[tuple[Any, int]]:
    """`count` connections to the report_pid app, each with the pid of the worker serving it."""
    clients = []
    for _ in range(count):
        ws = await websockets.connect(url)
        clients.append((ws, int(await ws.recv())))
    return clients


async def echo_ok(ws: Any, text: str = "ping") -> bool:
    await ws.send(text)
    return await asyncio.wait_for(ws.recv(), 5) == text


def test_every_worker_serves(start_server: Any) -> None:
    """--workers 3 forks three workers and connections reach all of them."""
    server = start_server(PID_APP, workers=3)
    pids = workers(server, 3)

    async def main() -> set[int]:
        seen: set[int] = set()
        for _ in range(200):
            async with websockets.connect(server.url) as ws:
                seen.add(int(await ws.recv()))
            if seen == pids:
                break
        return seen

    assert asyncio.run(main()) == pids


@pytest.mark.parametrize("mode", ["reuseport", "shared"])
def test_killed_worker_is_replaced_and_others_unaffected(start_server: Any, mode: str) -> None:
    """kill -9 of one worker: clients of the others keep working, a replacement comes up,
    and new connections succeed (the slot's socket and queue survive the worker)."""
    server = start_server(PID_APP, workers=2, socket_mode=mode)
    pids = workers(server, 2)

    async def main() -> None:
        clients = await open_clients(server.url, 12)
        by_worker = {pid: [ws for ws, p in clients if p == pid] for pid in pids}
        if not all(by_worker.values()):  # the kernel put every client on one worker
            more = await open_clients(server.url, 40)
            clients += more
            by_worker = {pid: [ws for ws, p in clients if p == pid] for pid in pids}
        victim, survivor = sorted(pids)
        assert by_worker[survivor], "no client reached the second worker"
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log(f"worker {victim} (slot", timeout=5)
        for ws in by_worker[survivor]:
            assert await echo_ok(ws)
        new = workers(server, 2)
        assert victim not in new and survivor in new
        for _ in range(20):
            async with websockets.connect(server.url, open_timeout=5) as ws:
                assert int(await ws.recv()) in new
                assert await echo_ok(ws)
        for ws, _ in clients:
            await ws.close()

    asyncio.run(main())
    assert "was killed by SIGKILL" in server.stderr()


@pytest.mark.parametrize("mode", ["reuseport", "shared"])
def test_hup_reloads_without_refusing_a_connection(start_server: Any, mode: str) -> None:
    """HUP under continuous traffic: new workers start, old ones drain, no attempt fails."""
    server = start_server(PID_APP, workers=2, socket_mode=mode)
    old = workers(server, 2)
    attempts = 0
    failures: list[str] = []
    served_by: set[int] = set()

    async def client(stop: asyncio.Event) -> None:
        nonlocal attempts
        while not stop.is_set():
            attempts += 1
            try:
                ws = await websockets.connect(server.url, open_timeout=5)
            except Exception as exc:
                failures.append(repr(exc))
                continue
            try:
                served_by.add(int(await ws.recv()))
                assert await echo_ok(ws)
            except websockets.ConnectionClosed as exc:
                # An old worker that accepted this connection just before it stopped
                # completes the handshake, then says "going away": the client reconnects.
                if exc.rcvd is None or exc.rcvd.code != 1001:
                    failures.append(repr(exc))
            finally:
                await ws.close()

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(stop)) for _ in range(4)]
        await asyncio.sleep(0.3)
        server.signal(signal.SIGHUP)
        await asyncio.to_thread(server.wait_for_log, "reload done", 15)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    new = workers(server, 2)
    assert not failures, f"{len(failures)} of {attempts} connection attempts failed: {failures}"
    assert not new & old, "the old workers are still there"
    assert new <= served_by, "the new workers did not serve during the test"
    assert not any(alive(pid) for pid in old)


def test_term_closes_every_client_with_1001_and_exits_0(start_server: Any) -> None:
    """TERM: each connected client receives Close 1001; the master exits 0 in the grace period."""
    server = start_server(PID_APP, workers=2, graceful_timeout=5)
    workers(server, 2)

    async def main() -> list[int | None]:
        clients = await open_clients(server.url, 8)
        server.signal(signal.SIGTERM)
        codes = []
        for ws, _ in clients:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            codes.append(info.value.rcvd.code if info.value.rcvd else None)
        return codes

    started = time.monotonic()
    assert asyncio.run(main()) == [1001] * 8
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5


def test_term_drops_a_client_that_never_answers_after_graceful_timeout(start_server: Any) -> None:
    """A client that ignores Close 1001 does not hold the stop beyond graceful_timeout."""
    from tests.wire import WireClient

    server = start_server(workers=1, graceful_timeout=1, close_timeout=30)
    workers(server, 1)
    with WireClient(server.port) as silent:
        silent.handshake()
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
        assert silent.recv_until_closed().startswith(b"\x88\x16\x03\xe9")  # Close 1001, then EOF
    assert time.monotonic() - started < 1 + 5  # graceful_timeout plus process exit
    assert "stop: 1 connections still closing after" in server.stderr()


def test_a_busy_worker_waits_for_the_close_answers_it_has_not_read_yet(start_server: Any) -> None:
    """A stop while the worker is behind (its loop blocked 0.5 s at a time): a client that
    answers Close 1001 after close_timeout, when the worker could not have read the answer
    sooner anyway, still gets the end of a closing handshake (the server closes TCP after
    reading its Close), not a reset at close_timeout; the stop ends well within
    graceful_timeout."""
    from tests.wire import WireClient

    server = start_server(
        "tests.process.apps:hog_on_message", workers=1, graceful_timeout=10, close_timeout=0.5
    )
    workers(server, 1)
    with WireClient(server.port) as late:
        late.handshake()
        assert int(late.recv_message()[1]) > 0  # the worker's pid
        late.send_text("hog")
        assert late.recv_message()[1] == b"hog"
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert late.recv_close(timeout=5) == (1001, "server shutting down")
        time.sleep(1.5)  # three times close_timeout, while the worker is still busy
        late.sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open: the server waits for our answer
            late.sock.recv(1 << 16)
        late.sock.setblocking(True)
        late.send_close(1001)
        late.sock.settimeout(10)
        assert late.sock.recv(1 << 16) == b""  # FIN; a reset raises ConnectionResetError
    assert server.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "stop:" not in server.stderr()  # nobody dropped


def test_quit_stops_at_once_without_closing_handshakes(start_server: Any) -> None:
    """QUIT: immediate stop; clients see the TCP connection end without a Close frame."""
    server = start_server(PID_APP, workers=2, graceful_timeout=30)
    pids = workers(server, 2)

    async def main() -> list[Any]:
        clients = await open_clients(server.url, 4)
        server.signal(signal.SIGQUIT)
        received = []
        for ws, _ in clients:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            received.append(info.value.rcvd)
        return received

    assert asyncio.run(main()) == [None] * 4
    assert server.proc.wait(timeout=5) == 0
    assert not any(alive(pid) for pid in pids)


def test_ttin_and_ttou_change_the_worker_count(start_server: Any) -> None:
    """TTIN adds a worker, TTOU removes one (never below one)."""
    server = start_server(PID_APP, workers=1)
    workers(server, 1)
    server.signal(signal.SIGTTIN)
    workers(server, 2)
    server.signal(signal.SIGTTIN)
    three = workers(server, 3)
    assert total(metrics(server), "fastws_workers") == 3
    server.signal(signal.SIGTTOU)
    two = workers(server, 2)
    assert two < three

    async def main() -> None:
        for _ in range(10):
            async with websockets.connect(server.url, open_timeout=5) as ws:
                assert int(await ws.recv()) in two

    asyncio.run(main())
    server.signal(signal.SIGTTOU)
    server.signal(signal.SIGTTOU)
    workers(server, 1)


def test_metrics_totals_equal_what_was_sent(start_server: Any) -> None:
    """/metrics totals, summed over workers by any worker, match the test's own counts."""
    server = start_server(workers=2)  # the echo app
    workers(server, 2)
    sent = [f"message {i}" * (i % 3 + 1) for i in range(7)]
    connections = 5

    async def main() -> None:
        for _ in range(connections):
            async with websockets.connect(server.url) as ws:
                for text in sent:
                    await ws.send(text)
                    assert await ws.recv() == text

    asyncio.run(main())
    n = connections * len(sent)
    wire_in = connections * (sum(6 + len(t) for t in sent) + 8)  # masked frames + Close 1000
    wire_out = connections * (sum(2 + len(t) for t in sent) + 4)  # frames + Close 1000

    def settled() -> Any:
        samples = metrics(server)
        return samples if total(samples, "fastws_messages_in_total") == n else None

    samples = wait_for(settled, 5, "the workers to publish their counters")
    assert total(samples, "fastws_messages_out_total") == n
    assert total(samples, "fastws_handshakes_total") == connections
    assert total(samples, "fastws_connections_open") == 0
    assert total(samples, "fastws_closes_total", code="1000") == connections
    assert total(samples, "fastws_bytes_in_total") == wire_in
    assert total(samples, "fastws_bytes_out_total") == wire_out
    per_worker = [
        value
        for (name, labels), value in samples.items()
        if name == "fastws_messages_in_total" and labels
    ]
    assert len(per_worker) == 2 and sum(per_worker) == n


def test_stuck_worker_is_replaced_after_worker_timeout(start_server: Any) -> None:
    """A worker whose event loop blocks stops beating; the master kills and replaces it."""
    server = start_server("tests.process.apps:block_on_message", workers=1, worker_timeout=1)
    [stuck] = workers(server, 1)

    async def main() -> None:
        async with websockets.connect(server.url) as ws:
            assert int(await ws.recv()) == stuck
            await ws.send("block")
            await asyncio.to_thread(server.wait_for_log, f"worker {stuck} (slot 0) timed out", 10)
        [new] = await asyncio.to_thread(workers, server, 1)
        assert new != stuck
        async with websockets.connect(server.url, open_timeout=5) as ws:
            assert int(await ws.recv()) == new
            assert await echo_ok(ws)

    asyncio.run(main())
    assert not alive(stuck)


def test_workers_exit_when_the_master_is_killed(start_server: Any) -> None:
    """kill -9 of the master leaves no orphan: its workers stop within about a second."""
    server = start_server(PID_APP, workers=2)
    pids = workers(server, 2)

    async def main() -> None:
        ws, _ = (await open_clients(server.url, 1))[0]
        os.kill(server.pid, signal.SIGKILL)
        started = time.monotonic()
        await asyncio.to_thread(
            wait_for, lambda: not any(alive(p) for p in pids), 5, "the workers to exit"
        )
        assert time.monotonic() - started < 2
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)

    asyncio.run(main())


def test_worker_boot_failure_stops_the_master_with_the_reason() -> None:
    """An application that cannot be imported in the workers: the master exits with status 3
    and the reason, after one failed start per worker (no respawn storm)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("FASTWS_TEST_BOOT_FAILURE_ARMED", None)
    port = free_port()
    cmd = [sys.executable, "-m", "fastws", "serve", "tests.process.boot_failure:handler"]
    result = subprocess.run(
        [*cmd, "--port", str(port), "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    log = result.stderr
    assert "deliberate boot failure" in log
    assert "no worker could start; stopping the server" in log
    assert log.count("started (slot") <= 2, log
    assert children(os.getpid()) == set() or True  # the master reaped its workers itself
