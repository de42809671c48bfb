"""Idle connections against a multi-worker fastws: memory per connection, spread, handshake rate.

Starts `fastws serve --workers W --socket-mode MODE` (echo app), opens N WebSocket connections
from several 127.0.0.x source addresses (one client process holds them; it answers the server's
pings), waits until /metrics counts them all open, and reports:

- server RSS per idle connection: (RSS of master + workers with N open - RSS before) / N,
  from /proc VmRSS (and PSS from smaps_rollup, which splits pages the forked workers share);
- how the connections spread over the workers (from /metrics connections_open per worker);
- handshakes per second while opening them (the client runs on the same 2 cores: a floor).

    python bench/idle.py --connections 10000 --workers 2 --socket-mode reuseport
    python bench/idle.py --connections 10000 --workers 2 --socket-mode shared
    python bench/idle.py --smoke          # seconds: 200 connections, checks it all works
    python bench/idle.py --connections 100000 --workers 8 --client-processes 8 --sources 16

Each run prints one JSON line (add --json-only to print nothing else).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (python bench/idle.py): find the harness
    sys.path.insert(0, str(ROOT))

from bench.procs import descendants, free_port  # noqa: E402
from bench.procs import raise_fd_limit as raise_nofile  # noqa: E402

REQUEST = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def tree(root: int) -> list[int]:
    """The server's pid and its workers' (the harness's /proc walk)."""
    return descendants(root)


def memory(root: int) -> tuple[int, int]:
    """(VmRSS, Pss) in bytes, summed over the server's processes."""
    rss = pss = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status)[1]) * 1024  # type: ignore[index]
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss += int(re.search(r"Pss:\s+(\d+)", rollup)[1]) * 1024  # type: ignore[index]
    return rss, pss


def metrics(port: int) -> dict[tuple[str, str], float]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = data.partition(b"\r\n\r\n")[2].decode()
    out = {}
    for name, labels, value in re.findall(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", body, re.M):
        out[(name, labels)] = float(value)
    return out


def open_per_worker(port: int) -> dict[str, int]:
    return {
        labels.split('"')[1]: int(value)
        for (name, labels), value in metrics(port).items()
        if name == "fastws_connections_open" and labels
    }


class Idle(asyncio.Protocol):
    """A WebSocket client that completes the handshake, then only answers pings."""

    def __init__(self, opened: asyncio.Future[None]) -> None:
        self.opened = opened
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.opened.done():
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.opened.set_result(None)
            self.buf = rest
        while len(self.buf) >= 2:  # server frames: unmasked, pings are short
            length = self.buf[1] & 0x7F
            if len(self.buf) < 2 + length:
                return
            opcode, payload = self.buf[0] & 0x0F, self.buf[2 : 2 + length]
            self.buf = self.buf[2 + length :]
            if opcode == 0x9 and self.transport is not None:  # ping -> masked pong
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))


async def open_connections(
    port: int, count: int, sources: int, concurrency: int
) -> tuple[list[asyncio.BaseTransport], float, int]:
    loop = asyncio.get_running_loop()
    request = REQUEST.format(host=f"127.0.0.1:{port}").encode()
    transports: list[asyncio.BaseTransport] = []
    failures = 0
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal failures
        async with limit:
            source = f"127.0.0.{2 + i % sources}"
            opened: asyncio.Future[None] = loop.create_future()
            try:
                transport, _ = await loop.create_connection(
                    lambda: Idle(opened), "127.0.0.1", port, local_addr=(source, 0)
                )
                transport.write(request)  # type: ignore[attr-defined]
                await asyncio.wait_for(opened, 30)
                transports.append(transport)
            except (OSError, TimeoutError):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return transports, time.perf_counter() - started, failures


async def open_in_children(
    port: int, args: argparse.Namespace
) -> tuple[int, float, int, list[subprocess.Popen[str]]]:
    """Open the connections from `args.client_processes` processes; they hold them until
    their stdin closes. Returns (opened, seconds for the slowest, failures, processes)."""
    k = args.client_processes
    children = []
    for i in range(k):
        share = args.connections // k + (i < args.connections % k)
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, "--child", str(port), str(share), str(args.sources)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=raise_nofile,
            )
        )
    opened = failures = 0
    slowest = 0.0
    for child in children:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        n, failed, seconds = line.split()
        opened, failures = opened + int(n), failures + int(failed)
        slowest = max(slowest, float(seconds))
    return opened, slowest, failures, children


def child(port: int, count: int, sources: int) -> int:
    """--child: open `count` connections, report, hold them until stdin closes."""
    raise_nofile()

    async def hold() -> None:
        transports, seconds, failures = await open_connections(port, count, sources, 256)
        print(len(transports), failures, round(seconds, 3), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        for t in transports:
            t.abort()

    try:
        import uvloop

        uvloop.run(hold())
    except ImportError:
        asyncio.run(hold())
    return 0


def run(args: argparse.Namespace) -> dict[str, object]:
    raise_nofile()
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "fastws",
        "serve",
        args.app,
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--socket-mode",
        args.socket_mode,
        "--log-level",
        "warning",
        "--ping-interval",
        "30s",
    ]
    server = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, preexec_fn=raise_nofile)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if len(open_per_worker(port)) == max(args.workers, 1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        rss0, pss0 = memory(server.pid)

        async def scenario() -> dict[str, object]:
            children: list[subprocess.Popen[str]] = []
            if args.client_processes > 1:  # one process holds at most ~RLIMIT_NOFILE sockets
                n, seconds, failures, children = await open_in_children(port, args)
                transports: list[asyncio.BaseTransport] = []
            else:
                transports, seconds, failures = await open_connections(
                    port, args.connections, args.sources, args.concurrency
                )
                n = len(transports)
            deadline = time.monotonic() + 30
            while sum(open_per_worker(port).values()) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.hold)
            rss1, pss1 = memory(server.pid)
            spread = open_per_worker(port)
            for t in transports:
                t.abort()
            for child in children:
                assert child.stdin is not None
                child.stdin.close()
                child.wait()
            counts = sorted(spread.values())
            return {
                "workers": args.workers,
                "socket_mode": args.socket_mode,
                "connections": n,
                "failures": failures,
                "sources": args.sources,
                "handshakes_per_s": round(n / seconds),
                "rss_per_conn_bytes": round((rss1 - rss0) / n) if n else None,
                "pss_per_conn_bytes": round((pss1 - pss0) / n) if n else None,
                "rss_before_mib": round(rss0 / 2**20, 1),
                "rss_after_mib": round(rss1 / 2**20, 1),
                "per_worker": counts,
                "max_over_mean": round(max(counts) / statistics.mean(counts), 3) if n else None,
                "stdev_over_mean": round(statistics.pstdev(counts) / statistics.mean(counts), 3)
                if n
                else None,
            }

        try:
            import uvloop

            return uvloop.run(scenario())
        except ImportError:
            return asyncio.run(scenario())
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(*map(int, sys.argv[2:5]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--socket-mode", choices=["reuseport", "shared"], default="reuseport")
    parser.add_argument("--sources", type=int, default=8, help="127.0.0.x source addresses")
    parser.add_argument("--concurrency", type=int, default=256, help="handshakes in flight")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds idle before measuring")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="client processes (fd limit per process)"
    )
    parser.add_argument(
        "--app", default="fastws.apps.echo:Echo", help="APP (fastws.apps.echo:echo: coroutine)"
    )
    parser.add_argument("--smoke", action="store_true", help="200 connections, ~seconds")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.connections, args.hold = 200, 0.2
    result = run(args)
    if not args.json_only:
        print(
            f"{result['connections']} idle connections, {args.workers} workers"
            f" ({args.socket_mode}): {result['rss_per_conn_bytes']} B RSS"
            f" / {result['pss_per_conn_bytes']} B PSS per connection,"
            f" {result['handshakes_per_s']} handshakes/s, per worker {result['per_worker']}",
            file=sys.stderr,
        )
    print(json.dumps(result))
    return 0 if result["failures"] == 0 and result["connections"] == args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
