"""A/B: server CPU per echoed message of two fastws source trees, in alternating rounds.

For a change to the per-message I/O path that the micro suites (which drive the protocol
core alone) cannot see. Each tree runs as `python -m fastws serve --workers 0` with
PYTHONPATH set to it; the same fastws client sends 64-byte binary messages over one
connection, `--window` in flight; server CPU comes from /proc. Make tree A with e.g.
`git worktree add /tmp/before HEAD~1`. `--size` changes the message size (large messages:
`--size 1MiB --window 4 --messages 2000`).

    python -m bench.ab /tmp/before . --window 100 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import fastws
from fastws.config import parse_size


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tree: str, port: int, size: int, app: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
    cmd = [sys.executable, "-m", "fastws", "serve", *([app] if app else [])]
    cmd += ["--port", str(port), "--workers", "0"]
    cmd += ["--max-message-size", str(max(size, 1 << 20)), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd="/")
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the server from {tree} did not start")


async def _echo(port: int, messages: int, window: int, size: int) -> float:
    payload = os.urandom(size)
    url = f"ws://127.0.0.1:{port}"
    async with fastws.connect(url, max_queue=2 * window, max_message_size=size) as ws:
        start = time.perf_counter()
        for _ in range(messages // window):
            for _ in range(window):
                await ws.send(payload)
            for _ in range(window):
                assert await ws.recv() == payload
        return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("--window", type=int, default=100, help="messages in flight")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=parse_size, default=64, help="message size, e.g. 1MiB")
    parser.add_argument(
        "--app",
        help="APP for both trees (default: each tree's built-in echo), e.g. "
        "fastws.apps.echo:echo for the coroutine handler",
    )
    args = parser.parse_args()
    trees = {"A": args.tree_a, "B": args.tree_b}
    ports = {"A": _free_port(), "B": _free_port()}
    procs = {name: _start(tree, ports[name], args.size, args.app) for name, tree in trees.items()}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    rate: dict[str, list[float]] = {name: [] for name in trees}
    try:
        for _ in range(args.rounds):
            for name in trees:
                before = _cpu_seconds(procs[name].pid)
                rate[name].append(
                    asyncio.run(_echo(ports[name], args.messages, args.window, args.size))
                )
                used = _cpu_seconds(procs[name].pid) - before
                cpu[name].append(used / args.messages * 1e6)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait()
    for name, tree in trees.items():
        print(
            f"{name} {tree}: {statistics.median(rate[name]):,.0f} msgs/s, server CPU "
            f"{statistics.median(cpu[name]):.1f} us/msg (rounds: "
            + ", ".join(f"{c:.1f}" for c in cpu[name])
            + ")"
        )
    ratio = statistics.median(cpu["A"]) / statistics.median(cpu["B"])
    print(f"server CPU per message, A / B: {ratio:.2f}")


if __name__ == "__main__":
    main()
