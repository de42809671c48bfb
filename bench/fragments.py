"""How long a flood of tiny fragments keeps a worker busy, seen by another client.

    python -m bench.fragments                       # 100,000 one-byte fragments, 5 rounds
    python -m bench.fragments --fragments 65536 --size 256 --rounds 3

One worker (`fastws serve --workers 1`). A probe client (the `websockets` library, in a
thread) echoes a small message every 2 ms and records each round trip; meanwhile an attacker
sends one binary message as `--fragments` frames of `--size` bytes in one write, and waits
for its echo. Reported per round: the time from the attacker's first byte to its echo, and the
probe's worst round trip while the fragments were being parsed (how long other connections
starve), against its median when idle. `--profile` runs py-spy on the worker for one round.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from websockets.sync.client import connect

from bench.faults import own_server, workers_of
from tests.wire import OP_BINARY, OP_CONT, WireClient, encode_frame

ZERO_KEY = b"\x00\x00\x00\x00"


def message(fragments: int, size: int) -> bytes:
    piece = b"x" * size
    last = fragments - 1
    return b"".join(
        encode_frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=i == last, masking_key=ZERO_KEY)
        for i in range(fragments)
    )


class Probe(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float]] = []  # (sent at, round trip)
        self.stop = threading.Event()

    def run(self) -> None:
        with connect(self.url, compression=None, proxy=None, ping_interval=None) as ws:
            while not self.stop.is_set():
                start = time.monotonic()
                ws.send("probe")
                ws.recv(timeout=30)
                self.samples.append((start, time.monotonic() - start))
                self.stop.wait(0.002)

    def worst(self, start: float, end: float) -> float:
        return max((rtt for at, rtt in self.samples if at + rtt >= start and at <= end), default=0)


def one_round(port: int, data: bytes, expected: int, probe: Probe) -> dict[str, float]:
    with WireClient(port, timeout=60) as attacker:
        attacker.handshake()
        attacker.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        time.sleep(0.2)
        start = time.monotonic()
        attacker.send_raw(data)
        opcode, payload = attacker.recv_message()
        took = time.monotonic() - start
        assert opcode == OP_BINARY and len(payload) == expected, (opcode, len(payload))
    return {
        "echo_s": round(took, 3),
        "probe_worst_ms": round(probe.worst(start, start + took) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fragments", description=__doc__)
    parser.add_argument("--fragments", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="py-spy output file (SVG flame graph) for one round")
    args = parser.parse_args(argv)
    data = message(args.fragments, args.size)
    extra = ["--max-fragments", str(max(args.fragments, 100_000))]
    with own_server(1, 30.0, extra, app="fastws.apps.echo:echo") as (url, master):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        probe = Probe(url)
        probe.start()
        time.sleep(0.5)
        rounds = [
            one_round(port, data, args.fragments * args.size, probe) for _ in range(args.rounds)
        ]
        idle = statistics.median(rtt for _, rtt in probe.samples[:50])
        if args.profile:
            [worker] = workers_of(master)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(worker),
                 "-o", args.profile, "-r", "500", "--nonblocking",
                 *(["--format", "raw"] if args.profile.endswith(".txt") else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
            rounds.append(one_round(port, data, args.fragments * args.size, probe))
            time.sleep(0.3)
            spy.send_signal(2)
            spy.wait(30)
        probe.stop.set()
        probe.join(5)
    report = {
        "fragments": args.fragments,
        "size": args.size,
        "rounds": rounds,
        "echo_s_median": statistics.median(r["echo_s"] for r in rounds),
        "probe_worst_ms_median": statistics.median(r["probe_worst_ms"] for r in rounds),
        "probe_idle_ms": round(idle * 1000, 2),
        "pid": os.getpid(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
