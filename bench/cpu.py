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
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.idle import REQUEST, ROOT, free_port, open_per_worker, raise_nofile, tree
from bench.procs import cpu_split

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


#: Why CPU per message moves: read/write system calls (all kinds: recv, send, writev, epoll
#: are not in these) and context switches, summed over the server's processes.
KERNEL_COUNTS = {
    "syscr": "io",
    "syscw": "io",
    "voluntary_ctxt_switches": "status",
    "nonvoluntary_ctxt_switches": "status",
}


def kernel_counts(root: int) -> dict[str, int]:
    totals = dict.fromkeys(KERNEL_COUNTS, 0)
    for pid in tree(root):
        for source in ("io", "status"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if KERNEL_COUNTS.get(name) == source:
                        totals[name] += int(value)
    return totals


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


async def load(port: int, connections: int, batch: int, messages: int, rate: float) -> float:
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

    # With a rate, each connection sends its batch on a fixed schedule (open loop), so every
    # worker count sees the same messages per second; without, as fast as echoes come back.
    interval = connections * batch / rate if rate else 0.0

    async def run(proto: Echoes, offset: float) -> None:
        due = loop.time() + offset
        for _ in range(rounds):
            if interval:
                await asyncio.sleep(max(0.0, due - loop.time()))
                due += interval
            await proto.round()

    started = time.perf_counter()
    await asyncio.gather(*(run(p, interval * i / connections) for i, p in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for proto in clients:
        proto.transport.abort()  # type: ignore[union-attr]
    return elapsed


def measure(workers: int, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    cmd = [sys.executable, "-m", "fastws", "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", "warning", "--ping-interval", "off"]
    server = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, preexec_fn=raise_nofile)
    if args.pin:
        # Before it forks: the workers inherit the master's cpu.
        server_cpus, client_cpus = cpu_split()
        os.sched_setaffinity(server.pid, server_cpus)
        os.sched_setaffinity(0, client_cpus)
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

        counts: dict[str, int] = {}

        async def scenario() -> tuple[float, float]:
            before, before_counts = cpu_seconds(server.pid), kernel_counts(server.pid)
            elapsed = await load(port, args.connections, args.batch, args.messages, args.rate)
            after_counts = kernel_counts(server.pid)
            counts.update({k: after_counts[k] - before_counts[k] for k in after_counts})
            return cpu_seconds(server.pid) - before, elapsed

        try:
            import uvloop

            cpu, elapsed = uvloop.run(scenario())
        except ImportError:
            cpu, elapsed = asyncio.run(scenario())
        per_thousand = {f"{k}_per_1000": round(v / sent * 1000, 1) for k, v in counts.items()}
        return {
            "workers": workers,
            "messages": sent,
            "server_cpu_s": round(cpu, 2),
            "cpu_s_per_million": round(cpu / sent * 1e6, 2),
            "wall_s": round(elapsed, 2),
            "messages_per_s": round(sent / elapsed),
            **per_thousand,
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
    parser.add_argument(
        "--rate", type=float, default=0, help="messages/s in total (0: as fast as possible)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server (all workers) on one cpu, this load generator on the others, as bench/ runs",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the worker counts")
    parser.add_argument("--smoke", action="store_true", help="20,000 messages, 1 and 2 workers")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.workers = 20_000, "1,2"
    raise_nofile()
    counts = [int(w) for w in args.workers.split(",")]
    runs: dict[int, list[dict[str, object]]] = {w: [] for w in counts}
    for round_ in range(args.repeat):
        # Alternate the order: the run order alone moves a figure by about 15 %.
        for workers in counts if round_ % 2 == 0 else counts[::-1]:
            result = measure(workers, args)
            runs[workers].append(result)
            print(json.dumps(result), flush=True)
    medians = {w: statistics.median(r["cpu_s_per_million"] for r in runs[w]) for w in counts}  # type: ignore[misc]
    for workers in counts:
        summary = {
            "workers": workers,
            "median_cpu_s_per_million": medians[workers],
            "relative_to_first": round(medians[workers] / medians[counts[0]], 3),
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
