"""Server CPU-seconds per million small messages with 1, 2, 4... workers under the same load.

This 2-core machine cannot show wall-clock scaling (the load generator needs a core), but it can
show that adding workers adds no cross-worker cost: the CPU the server spends per message,
summed over the master and all workers from /proc (utime + stime), should stay flat.

Load: C connections from one client process (uvloop, raw frames), each sending batches of B
masked 32-byte text frames and waiting for their B echoes, until N messages have been echoed.

    python bench/cpu.py --workers 1,2,4 --messages 1000000
    python bench/cpu.py --smoke           # seconds: 20,000 messages, 1 and 2 workers

Prints one JSON line per worker count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.idle import REQUEST, ROOT, free_port, open_per_worker, raise_nofile, tree

TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"x" * 32
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + b"\0\0\0\0" + PAYLOAD  # zero mask: payload as is


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Echoes(asyncio.Protocol):
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.opened = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] | None = None
        self.pending = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.opened.done():
            head, sep, self.buf = self.buf.partition(b"\r\n\r\n")
            if sep:
                self.opened.set_result(None)
            else:
                self.buf = head
            return
        size = 2 + len(PAYLOAD)
        frames = len(self.buf) // size
        self.buf = self.buf[frames * size :]
        self.pending -= frames
        if self.pending <= 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def round(self) -> None:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.pending = self.batch
        self.transport.write(FRAME * self.batch)
        await self.done


async def load(port: int, connections: int, batch: int, messages: int) -> float:
    loop = asyncio.get_running_loop()
    clients = []
    for i in range(connections):
        _, proto = await loop.create_connection(
            lambda: Echoes(batch), "127.0.0.1", port, local_addr=(f"127.0.0.{2 + i % 8}", 0)
        )
        proto.transport.write(REQUEST.format(host=f"127.0.0.1:{port}").encode())  # type: ignore[union-attr]
        await proto.opened
        clients.append(proto)
    rounds = max(messages // (connections * batch), 1)

    async def run(proto: Echoes) -> None:
        for _ in range(rounds):
            await proto.round()

    started = time.perf_counter()
    await asyncio.gather(*(run(p) for p in clients))
    elapsed = time.perf_counter() - started
    for proto in clients:
        proto.transport.abort()  # type: ignore[union-attr]
    return elapsed


def measure(workers: int, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    cmd = [sys.executable, "-m", "fastws", "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", "warning", "--ping-interval", "off"]
    server = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, preexec_fn=raise_nofile)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if len(open_per_worker(port)) == max(workers, 1):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        sent = (max(args.messages // (args.connections * args.batch), 1)) * args.connections
        sent *= args.batch

        async def scenario() -> tuple[float, float]:
            before = cpu_seconds(server.pid)
            elapsed = await load(port, args.connections, args.batch, args.messages)
            return cpu_seconds(server.pid) - before, elapsed

        try:
            import uvloop

            cpu, elapsed = uvloop.run(scenario())
        except ImportError:
            cpu, elapsed = asyncio.run(scenario())
        return {
            "workers": workers,
            "messages": sent,
            "server_cpu_s": round(cpu, 2),
            "cpu_s_per_million": round(cpu / sent * 1e6, 2),
            "wall_s": round(elapsed, 2),
            "messages_per_s": round(sent / elapsed),
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="frames in flight per connection")
    parser.add_argument("--smoke", action="store_true", help="20,000 messages, 1 and 2 workers")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.workers = 20_000, "1,2"
    raise_nofile()
    results = [measure(int(w), args) for w in args.workers.split(",")]
    base = results[0]["cpu_s_per_million"]
    for result in results:
        result["relative_to_first"] = round(result["cpu_s_per_million"] / base, 3)  # type: ignore[operator]
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
