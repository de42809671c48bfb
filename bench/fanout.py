"""Fan-out rate: 1 publisher -> N subscribers, fastws channels against `websockets.broadcast()`.

Each server is started in turn (own process group, stopped by PID); N raw-socket subscribers
connect from several client processes and 127.0.0.x source addresses (fd limit: at most
`--per-process` sockets per process), each gets "ok" once subscribed; then one publisher
connection sends M text messages of `--size` bytes and the clients count what arrives until
every subscriber has all M (their byte streams are checked to be exactly the expected frames
on one connection per client process, by length on the others). Reported per server:

- deliveries/s: N x M / (time from the first publish to the last delivery);
- deliveries per server CPU-second: N x M / (user + system CPU of the server's processes over
  that time, from /proc): the figure that does not depend on how many cores the server used;
  with `--broker URL --broker-pid PID` the broker's (redis-server's) CPU is counted too;
- server CPU per delivery split into user and system time: on loopback the system part holds
  the whole TCP path of both ends (the sender's write also runs the receiver's side);
- the ratio of each to the `websockets` peer's;
- in the JSON, `writes_per_subscriber`: the server's write(2)/writev(2) calls per subscriber
  (/proc/PID/io syscw; send(2), which asyncio's transports use, is not counted there: 0 for
  `websockets` on asyncio). Below the message count when a server batches messages.

    python -m bench.fanout --subscribers 10000 --messages 100                  # burst
    python -m bench.fanout --subscribers 10000 --messages 30 --rate 5          # paced
    python -m bench.fanout --servers fastws,websockets --workers 2 --repeat 3
    python -m bench.fanout --servers fastws,websockets --broker redis://127.0.0.1:6379/0 \\
        --broker-pid "$(pidof redis-server)"
    python -m bench.fanout --smoke                                             # seconds

Servers: `fastws` (channels: `fastws.publish` in the /pub handler, subscribers spread over
`--workers` workers, delivery between workers through the shared ring, or `--broker URL`),
`fastws --pipelined` (the publisher starts each publish as a task instead of awaiting it before
reading the next message: with Redis, an awaited publish waits for Redis's acknowledgement),
`fastws-direct` (`server.broadcast()` to the app's own set, one process: the same thing the
peer does), `websockets` and `websockets-uvloop` (bench/servers/fanout_websockets.py, one
process). fastws runs with --broadcast-limit 1GiB so that clients slowed down by sharing the
cores with the server are never dropped (the peer never drops anyone either).

Burst (`--rate 0`, default) sends the M messages back to back, so a server may frame several
per loop iteration (fastws then writes them to each subscriber in one writev); `--rate R`
paces them, one per loop iteration, the per-message cost (5 msg/s to 10,000 subscribers is
50,000 deliveries/s, which every server here keeps up with; at a rate a server cannot keep up
with, messages queue and it is a burst again).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import CLK_TCK, descendants, free_port, raise_fd_limit, terminate

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
OK_FRAME = b"\x81\x02ok"
SERVERS = ("fastws", "fastws-direct", "websockets", "websockets-uvloop")


def message(i: int, size: int) -> bytes:
    return f"{i:010d}".encode().ljust(size, b"x")[:size] if size >= 10 else b"x" * size


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def masked(payload: bytes) -> bytes:
    """A client frame (text, masked with a zero key: valid and cheap)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


# -- the client processes -----------------------------------------------------------------------


def open_subscriber(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(REQUEST.format(path="/sub").encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + len(OK_FRAME):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101") or rest != OK_FRAME:
        raise ConnectionError(f"unexpected answer: {data[:200]!r}")
    sock.setblocking(False)
    return sock


def child(port: int, count: int, sources: list[str], messages: int, size: int) -> int:
    """Hold `count` subscribers, print "ready", read until each has every message."""
    raise_fd_limit()
    socks = [open_subscriber(port, sources[i % len(sources)]) for i in range(count)]
    print("ready", flush=True)
    expected = b"".join(frame(message(i, size)) for i in range(messages))
    want = len(expected)
    got = dict.fromkeys(range(len(socks)), 0)
    checked = bytearray()  # the whole stream of socks[0], compared at the end
    sel = selectors.EpollSelector()
    for i, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, i)
    left = len(socks)
    last = 0.0
    deadline = time.monotonic() + float(os.environ.get("FANOUT_TIMEOUT", "300"))
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            i = key.data
            try:
                data = key.fileobj.recv(1 << 18)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                left -= 1
                continue
            got[i] += len(data)
            if i == 0:
                checked += data
            if got[i] >= want:
                sel.unregister(key.fileobj)
                left -= 1
                last = time.monotonic()
    complete = sum(n == want for n in got.values())
    print(
        json.dumps(
            {
                "complete": complete,
                "bytes": sum(got.values()),
                "last": last,
                "verified": bytes(checked) == expected,
            }
        ),
        flush=True,
    )
    for sock in socks:
        sock.close()
    return 0


# -- one run --------------------------------------------------------------------------------------


def write_calls(pids: list[int]) -> int:
    """Write system calls (write, writev, send...) made so far by the processes (/proc/PID/io)."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the processes, from /proc."""
    user = system = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def server_argv(name: str, port: int, args: argparse.Namespace) -> list[str]:
    if name in ("fastws", "fastws-direct"):
        app = ("pipelined" if args.pipelined else "publish") if name == "fastws" else "direct"
        workers = str(args.workers) if name == "fastws" else "0"
        argv = [PY, "-m", "fastws", "serve", f"bench.servers.fanout_fastws:{app}"]
        argv += ["--port", str(port), "--workers", workers, "--broadcast-limit", "1GiB"]
        argv += ["--ping-interval", "off", "--log-level", "warning", "--backlog", "4096"]
        if name == "fastws" and args.broker:
            argv += ["--broker", args.broker]
        return argv
    argv = [PY, str(ROOT / "bench/servers/fanout_websockets.py"), str(port)]
    return argv + (["--uvloop"] if name == "websockets-uvloop" else [])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not listen")


def run_one(name: str, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        server_argv(name, port, args),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        wait_listening(port, server)
        time.sleep(0.5 if name == "fastws" else 0.1)  # workers up
        procs = -(-args.subscribers // args.per_process)
        sources = [f"127.0.0.{2 + i}" for i in range(max(1, args.sources))]
        for p in range(procs):
            count = min(args.per_process, args.subscribers - p * args.per_process)
            argv = [PY, "-m", "bench.fanout", "--child", str(port), str(count), ",".join(sources)]
            argv += [str(args.messages), str(args.size)]
            clients.append(
                subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            )
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a client process failed to connect ({line!r})")
        time.sleep(0.5)  # let the last subscriptions settle, and the server go idle
        pids = descendants(server.pid)
        if name == "fastws" and args.broker and args.broker_pid:
            pids.append(args.broker_pid)  # the broker's CPU is the server side's too
        pub = socket.create_connection(("127.0.0.1", port))
        pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pub.sendall(REQUEST.format(path="/pub").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += pub.recv(4096)
        frames = [masked(message(i, args.size)) for i in range(args.messages)]
        cpu0, writes0 = cpu_times(pids), write_calls(pids)
        t0 = time.monotonic()
        if args.rate:
            for i, data in enumerate(frames):
                pause = t0 + i / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pub.sendall(data)
        else:
            pub.sendall(b"".join(frames))
        results = []
        for client in clients:
            assert client.stdout is not None
            results.append(json.loads(client.stdout.readline()))
            client.wait(30)
        cpu1, writes1 = cpu_times(pids), write_calls(pids)
        pub.close()
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        terminate(server, 15)
        stderr = server.stderr.read().decode(errors="replace") if server.stderr else ""
        if server.stderr:
            server.stderr.close()
    complete = sum(int(r["complete"]) for r in results)
    last = max(float(r["last"]) for r in results)
    elapsed = max(last - t0, 1e-9)
    deliveries = complete * args.messages
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu = user + system
    return {
        "server": name,
        "subscribers": args.subscribers,
        "complete": complete,
        "verified": all(r["verified"] for r in results),
        "messages": args.messages,
        "size": args.size,
        "rate": args.rate,
        "workers": args.workers if name == "fastws" else 1,
        "broker": (args.broker or "local") if name == "fastws" else None,
        "pipelined": bool(args.pipelined) if name == "fastws" else None,
        "seconds": round(elapsed, 3),
        "server_cpu_s": round(cpu, 3),
        "server_user_s": round(user, 3),
        "server_sys_s": round(system, 3),
        "writes_per_subscriber": round((writes1 - writes0) / max(1, complete), 2),
        "deliveries_per_s": round(deliveries / elapsed),
        "deliveries_per_cpu_s": round(deliveries / cpu) if cpu > 0 else None,
        "server_log_tail": stderr[-400:] if complete < args.subscribers else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--child", nargs=5, metavar=("PORT", "N", "SOURCES", "M", "SIZE"))
    parser.add_argument("--servers", default="fastws,websockets")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="payload bytes per message")
    parser.add_argument("--rate", type=float, default=0, help="messages/s; 0: all at once")
    parser.add_argument("--workers", type=int, default=2, help="fastws workers")
    parser.add_argument("--broker", default=None, help="fastws --broker (default local)")
    parser.add_argument(
        "--broker-pid", type=int, help="count this process's CPU (redis-server) with fastws's"
    )
    parser.add_argument(
        "--pipelined",
        action="store_true",
        help="fastws: the publisher does not await each publish before the next (tasks)",
    )
    parser.add_argument("--per-process", type=int, default=2500, help="subscribers/client")
    parser.add_argument("--sources", type=int, default=8, help="127.0.0.x source addresses")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, servers alternating")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--smoke", action="store_true", help="200 subscribers, 20 messages")
    args = parser.parse_args()
    if args.child:
        port, count, sources, messages, size = args.child
        return child(int(port), int(count), sources.split(","), int(messages), int(size))
    if args.smoke:
        args.subscribers, args.messages, args.per_process = 200, 20, 100
    raise_fd_limit()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    for name in names:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r} (one of {', '.join(SERVERS)})")
    rows: list[dict[str, object]] = []
    for round_ in range(args.repeat):
        for name in names if round_ % 2 == 0 else names[::-1]:
            row = run_one(name, args)
            row["round"] = round_
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(report(rows, names))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["complete"] == args.subscribers and r["verified"] for r in rows) else 1


def report(rows: list[dict[str, object]], names: list[str]) -> str:
    """Medians per server, and the ratios to the websockets peer (same run)."""

    def median(mine: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(r[key] or 0) for r in mine)  # type: ignore[arg-type]

    med: dict[str, tuple[float, float]] = {}
    split: dict[str, tuple[float, float]] = {}  # server CPU µs per delivery: user, system
    for name in names:
        mine = [r for r in rows if r["server"] == name]
        med[name] = (median(mine, "deliveries_per_s"), median(mine, "deliveries_per_cpu_s"))
        per = [
            (
                1e6 * float(r["server_user_s"]) / max(1, int(r["complete"]) * int(r["messages"])),  # type: ignore[call-overload,arg-type]
                1e6 * float(r["server_sys_s"]) / max(1, int(r["complete"]) * int(r["messages"])),  # type: ignore[call-overload,arg-type]
            )
            for r in mine
        ]
        split[name] = (
            statistics.median(u for u, _ in per),
            statistics.median(s for _, s in per),
        )
    peer = next((n for n in ("websockets", "websockets-uvloop") if n in med), None)
    lines = [
        "| server | deliveries/s | deliveries per server CPU-s | server CPU µs per delivery:"
        " user + system |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        rate, per_cpu = med[name]
        if peer and name != peer and med[peer][0] and med[peer][1]:
            rate_cell = f"{rate:,.0f} ({rate / med[peer][0]:.2f}x)"
            cpu_cell = f"{per_cpu:,.0f} ({per_cpu / med[peer][1]:.2f}x)"
        else:
            rate_cell, cpu_cell = f"{rate:,.0f}", f"{per_cpu:,.0f}"
        user, system = split[name]
        lines.append(f"| {name} | {rate_cell} | {cpu_cell} | {user:.2f} + {system:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
