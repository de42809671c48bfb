"""Soak: connect / echo / close churn against a real server, then check nothing leaked.

    python -m bench.soak --duration 60 --concurrency 50          # starts its own server
    python -m bench.soak --duration 600 --url ws://127.0.0.1:8000/ --pid 1234   # an existing one
    python -m bench.soak slowloris --sockets 1000                # 1,000 sockets, 1 byte/s

Churn: `concurrency` clients each loop {connect, send/receive `messages` echoes, close} for
`duration` seconds. Before (after a warm-up round) and after (once the server has settled),
the server's RSS and open file descriptors are read from /proc/PID/status and /proc/PID/fd,
summed over the server's process tree. A leak per connection shows up as fds that do not come
back, or RSS that keeps growing with the number of connections served. Exit status 1 when fds
do not return to baseline or RSS grew by more than --rss-slack MiB.

`slowloris` holds `sockets` connections trickling one header byte per second each and reports
how many the server still holds over time, and whether a probe client keeps getting echoes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import fastws
from bench import procs
from bench.procs import descendants, free_port

MiB = 1 << 20


# -- the server's process tree, from /proc --------------------------------------------------


def rss_bytes(pid: int) -> int:
    return procs.rss_bytes(descendants(pid))


def fd_count(pid: int) -> int:
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def settled(pid: int, quiet: float = 1.0, timeout: float = 30.0) -> tuple[int, int]:
    """(fds, rss) once the fd count has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    count, since = fd_count(pid), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        now = fd_count(pid)
        if now != count:
            count, since = now, time.monotonic()
    return count, rss_bytes(pid)


# -- a server to soak ---------------------------------------------------------------------------


@contextlib.contextmanager
def own_server(options: list[str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastws",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *options,
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/", proc.pid
    finally:
        procs.terminate(proc, 10)


# -- churn ----------------------------------------------------------------------------------------


async def client_loop(url: str, messages: int, until: float, stats: dict[str, int]) -> None:
    payload = b"soak" * 64
    while time.monotonic() < until:
        try:
            async with fastws.connect(url, open_timeout=10) as ws:
                for _ in range(messages):
                    await ws.send(payload)
                    if await asyncio.wait_for(ws.recv(), 10) != payload:
                        stats["wrong"] += 1
                    stats["echoes"] += 1
            stats["connections"] += 1
        except (TimeoutError, OSError, fastws.ConnectionClosed) as exc:
            stats["errors"] += 1
            stats.setdefault(f"error {type(exc).__name__}", 0)
            stats[f"error {type(exc).__name__}"] += 1


async def churn(url: str, concurrency: int, messages: int, duration: float) -> dict[str, int]:
    stats = {"connections": 0, "echoes": 0, "errors": 0, "wrong": 0}
    until = time.monotonic() + duration
    await asyncio.gather(*(client_loop(url, messages, until, stats) for _ in range(concurrency)))
    return stats


def soak(url: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    asyncio.run(churn(url, args.concurrency, args.messages, 0.5))  # warm-up: allocator, caches
    fds_before, rss_before = settled(pid)
    started = time.monotonic()
    stats = asyncio.run(churn(url, args.concurrency, args.messages, args.duration))
    elapsed = time.monotonic() - started
    fds_after, rss_after = settled(pid)
    growth = (rss_after - rss_before) / MiB
    return {
        **stats,
        "seconds": round(elapsed, 1),
        "connections_per_s": round(stats["connections"] / elapsed),
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_before_mib": round(rss_before / MiB, 1),
        "rss_after_mib": round(rss_after / MiB, 1),
        "rss_per_1000_connections_kib": round(growth * 1024 / max(1, stats["connections"]) * 1000),
        "ok": fds_after <= fds_before
        and growth <= args.rss_slack
        and stats["errors"] == 0
        and stats["wrong"] == 0,
    }


# -- slowloris at scale ----------------------------------------------------------------------------


async def probe_echoes(url: str, until: float, result: dict[str, float]) -> None:
    async with fastws.connect(url) as ws:
        while time.monotonic() < until:
            start = time.monotonic()
            await ws.send("probe")
            assert await asyncio.wait_for(ws.recv(), 10) == "probe"
            result["echoes"] = result.get("echoes", 0) + 1
            result["worst_ms"] = max(result.get("worst_ms", 0), (time.monotonic() - start) * 1e3)
            await asyncio.sleep(0.05)


def slowloris(url: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))
    fds_before, rss_before = settled(pid)
    socks = []
    for _ in range(args.sockets):
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    held = [fd_count(pid) - fds_before]
    probe: dict[str, float] = {}
    until = time.monotonic() + args.duration

    async def trickle() -> None:
        while time.monotonic() < until:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            held.append(fd_count(pid) - fds_before)
            await asyncio.sleep(1.0)

    async def main() -> None:
        await asyncio.gather(trickle(), probe_echoes(url, until, probe))

    asyncio.run(main())
    rss_peak = rss_bytes(pid)
    for sock in socks:
        sock.close()
    fds_after, rss_after = settled(pid)
    return {
        "sockets": args.sockets,
        "held_per_second": held,
        "probe": probe,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_before_mib": round(rss_before / MiB, 1),
        "rss_peak_mib": round(rss_peak / MiB, 1),
        "rss_after_mib": round(rss_after / MiB, 1),
        "ok": held[-1] <= 1 and fds_after <= fds_before,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("mode", nargs="?", choices=["churn", "slowloris"], default="churn")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--concurrency", type=int, default=50, help="churning clients")
    parser.add_argument("--messages", type=int, default=5, help="echoes per connection")
    parser.add_argument("--rss-slack", type=float, default=16.0, help="MiB of RSS growth allowed")
    parser.add_argument("--sockets", type=int, default=1000, help="slowloris sockets")
    parser.add_argument("--url", help="soak this server instead of starting one (with --pid)")
    parser.add_argument("--pid", type=int, help="the server's PID (its children are counted)")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="extra option for the server it starts, e.g. --server-option=--handshake-timeout=10",
    )
    args = parser.parse_args(argv)
    run = soak if args.mode == "churn" else slowloris
    if args.url:
        if args.pid is None:
            parser.error("--url needs --pid (to read the server's RSS and fds)")
        result = run(args.url, args.pid, args)
    else:
        with own_server(args.server_option) as (url, pid):
            result = run(url, pid, args)
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
