"""Where the master listens: --uds, --fd, and both ways of sharing a TCP port."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import unix_connect

from .helpers import spawn, wait_for, workers


def test_unix_socket(tmp_path: Path) -> None:
    """--uds PATH: workers serve a Unix socket the master created (and removes at exit)."""
    path = tmp_path / "fastws.sock"
    with spawn("--uds", str(path), "--workers", "2") as proc:
        wait_for(path.exists, 10, "the socket file")

        async def main() -> str:
            async with unix_connect(str(path), "ws://localhost/") as ws:
                await ws.send("over unix")
                return str(await ws.recv())

        assert asyncio.run(main()) == "over unix"
        proc.terminate()
        assert proc.wait(10) == 0
    assert not path.exists()


def test_unix_socket_and_inherited_fd_without_a_master(tmp_path: Path) -> None:
    """--workers 0 listens where --uds / --fd say, as a master does (it used to ignore both
    and listen on TCP)."""
    path = tmp_path / "single.sock"
    with spawn("--uds", str(path), "--workers", "0"):
        wait_for(lambda: _connects(path), 10, "the single-process server")

        async def over_unix() -> str:
            async with unix_connect(str(path), "ws://localhost/") as ws:
                await ws.send("one process")
                return str(await ws.recv())

        assert asyncio.run(over_unix()) == "one process"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port, fd = listener.getsockname()[1], listener.fileno()
    with spawn("--fd", str(fd), "--workers", "0", "--port", "1", pass_fds=(fd,)):
        listener.close()

        async def over_fd() -> str:
            async with websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
                await ws.send("via fd")
                return str(await ws.recv())

        assert asyncio.run(over_fd()) == "via fd"


def test_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    """A socket file nobody listens on (left by a crash) is reused; a live one is refused."""
    path = tmp_path / "fastws.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with spawn("--uds", str(path), "--workers", "1") as first:
        wait_for(lambda: _connects(path), 10, "the first server")
        with spawn("--uds", str(path), "--workers", "1") as second:
            assert second.wait(10) == 1
            assert second.stderr is not None
            assert "already in use" in second.stderr.read()
        assert first.poll() is None


def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def test_inherited_file_descriptor() -> None:
    """--fd N: the master serves a socket bound by its parent (as systemd passes one)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with spawn("--fd", str(fd), "--workers", "2", pass_fds=(fd,)):
        listener.close()  # the server holds its own copy now

        async def main() -> str:
            async with websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
                await ws.send("via fd")
                return str(await ws.recv())

        assert asyncio.run(main()) == "via fd"


def test_port_in_use_is_one_clear_error() -> None:
    """A port somebody else listens on: exit status 1 and the address in the message."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with spawn("--port", str(port), "--workers", "2") as proc:
            assert proc.wait(10) == 1
            assert proc.stderr is not None
            assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr.read()


@pytest.mark.parametrize(
    ("mode", "count"), [("reuseport", "2"), ("shared", "2"), ("reuseport", "0")]
)
def test_a_second_server_on_a_busy_port_fails_instead_of_sharing_it(
    start_server: Any, mode: str, count: str
) -> None:
    """Issue 18 item 1: a second fastws started on a port a running fastws listens on (the
    default socket mode, SO_REUSEPORT, would let it join and take a share of the new
    connections) exits non-zero with one line saying the address is in use, in every socket
    mode and with --workers 0; the first server keeps every connection."""
    first = start_server("tests.process.apps:report_pid", workers=2, socket_mode="reuseport")
    pids = workers(first, 2)
    with spawn("--port", str(first.port), "--socket-mode", mode, "--workers", count) as proc:
        assert proc.wait(20) == 1
        assert proc.stderr is not None
        lines = proc.stderr.read().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0].lower(), lines

    async def served_by() -> set[int]:
        seen = set()
        for _ in range(20):
            async with websockets.connect(first.url) as ws:
                seen.add(int(await ws.recv()))
        return seen

    assert asyncio.run(served_by()) <= pids


def test_a_port_another_program_shares_with_so_reuseport_is_refused() -> None:
    """Another program listening with SO_REUSEPORT (as nginx's `reuseport` does) would accept
    a reuseport fastws into its group: the master refuses the port instead."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with spawn("--port", str(port), "--workers", "2") as proc:
            assert proc.wait(20) == 1
            assert proc.stderr is not None
            assert "Address already in use" in proc.stderr.read()


@pytest.mark.parametrize("mode", ["reuseport", "shared"])
def test_both_socket_modes_with_port_0(mode: str) -> None:
    """--port 0 picks one free port that every worker slot shares, in either mode."""
    with spawn("--port", "0", "--workers", "3", "--socket-mode", mode) as proc:
        assert proc.stderr is not None
        line = wait_for(proc.stderr.readline, 10, "the master's first log line")
        assert (
            f"({'one SO_REUSEPORT socket per worker' if mode == 'reuseport' else 'shared socket'})"
            in line
        )
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])

        async def main() -> int:
            ok = 0
            for _ in range(30):
                async with websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
                    await ws.send("x")
                    ok += await ws.recv() == "x"
            return ok

        assert asyncio.run(main()) == 30


def test_reuseport_slots_keep_serving_after_ttin(start_server: Any) -> None:
    """TTIN in reuseport mode opens one more socket on the same port for the new slot."""
    server = start_server("tests.process.apps:report_pid", workers=1, socket_mode="reuseport")
    workers(server, 1)
    server.signal(signal.SIGTTIN)
    pids = workers(server, 2)

    async def main() -> set[int]:
        seen: set[int] = set()
        for _ in range(100):
            async with websockets.connect(server.url) as ws:
                seen.add(int(await ws.recv()))
            if seen == pids:
                break
        return seen

    assert asyncio.run(main()) == pids
