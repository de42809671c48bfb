"""What holds memory per idle fastws connection: tracemalloc and sys.getsizeof, one process.

Runs a fastws Server with bench/million.py's application (each connection subscribed to a
channel, its handler waiting in `async for`) in this process on uvloop, opens N idle
connections from bench/c/million.c (real handshakes; pings answered), and reports per
connection:

- RSS of this process over the baseline before the connections;
- tracemalloc: the bytes still allocated, grouped by the source line that allocated them
  (uvloop's and libuv's allocations through PyMem are traced and land on the Python line that
  was running: the event loop's own line for the transport and its libuv handle);
- sys.getsizeof of one connection's objects: the WebSocket/ServerProtocol, its Connection,
  transport, request and headers, handler task and the coroutine frames it waits in,
  futures, timers, and its entries in the server's, hub's and keepalive wheel's containers.

    python -m bench.million_memory --connections 5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from .build import build
from .million_app import Million, handler

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def rss() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) * 1024  # type: ignore[index]


def deep(obj: Any, seen: set[int], shared: set[int]) -> int:
    """getsizeof of obj and of the containers/strings/bytes it alone holds."""
    if id(obj) in seen or id(obj) in shared or obj is None or isinstance(obj, bool | int | float):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep(k, seen, shared) + deep(v, seen, shared) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep(v, seen, shared) for v in obj)
    elif hasattr(obj, "__slots__") and not isinstance(obj, str | bytes):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name != "__dict__" and hasattr(obj, name):
                    size += deep(getattr(obj, name), seen, shared)
    return size


def coroutine_chain(task: asyncio.Task[Any]) -> list[tuple[str, int]]:
    """(name, getsizeof) of the coroutine, async generators and awaitables a task waits in."""
    out = []
    obj: Any = task.get_coro()
    for _ in range(20):
        if obj is None:
            break
        name = getattr(obj, "__qualname__", type(obj).__name__)
        out.append((f"{type(obj).__name__} {name}", sys.getsizeof(obj)))
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "ag_await", None)
            or getattr(obj, "gi_yieldfrom", None)
        )
    return out


def one_connection(ws: Any, server: Any) -> dict[str, Any]:
    """getsizeof of what one idle connection holds, object by object."""
    shared = {id(ws._loop), id(ws._rbuf), id(server), id(server.config), id(ws._conn.assembler)}
    shared |= {id(ws._listener)} if ws._listener is not None else set()
    shared |= {id(x) for x in (ws._queue,)}  # the shared empty tuple
    rows: dict[str, Any] = {}
    rows["ServerProtocol object (slots)"] = sys.getsizeof(ws)
    rows["  its __dict__ (only if the app set attributes)"] = (
        sys.getsizeof(ws.__dict__) if getattr(ws, "__dict__", None) else 0
    )
    rows["Connection (protocol core), deep"] = deep(ws._conn, set(), shared)
    req = ws.request
    rows["Request object"] = sys.getsizeof(req)
    rows["  request headers (Headers + list + tuples + str), deep"] = deep(
        req.headers, set(), shared
    )
    rows["  request target/path/query/method/version strs"] = sum(
        sys.getsizeof(getattr(req, f)) for f in ("target", "path", "query")
    )
    rows["transport object (uvloop TCPTransport; libuv handle not included)"] = sys.getsizeof(
        ws._transport
    )
    rows["remote_address tuple + host str"] = deep(ws.remote_address, set(), shared)
    task = ws._handler_task
    rows["handler Task"] = sys.getsizeof(task) if task is not None else 0
    chain = coroutine_chain(task) if task is not None else []
    rows["handler coroutine frames (chain)"] = sum(s for _, s in chain)
    rows["  chain"] = chain
    rows["waiter Future (recv)"] = sys.getsizeof(ws._waiter) if ws._waiter is not None else 0
    lost = ws._lost
    rows["_lost Future (+ callbacks)"] = (
        sys.getsizeof(lost) + sum(sys.getsizeof(cb) for cb in (lost._callbacks or []))
        if lost is not None
        else 0
    )
    rows["_pings dict"] = sys.getsizeof(ws._pings)
    rows["Outbox, deep"] = deep(ws._out, set(), shared | {id(ws._transport), id(ws._flusher)})
    rows["timers (handshake timer, close timer, stall timer)"] = sum(
        sys.getsizeof(t)
        for t in (ws._handshake_timer, ws._close_timer, ws._stall_timer)
        if t is not None
    )
    n = max(len(server._connections), 1)
    rows["server._connections set, per connection"] = round(sys.getsizeof(server._connections) / n)
    hub = server.hub
    if hub is not None:
        subs = sum(sys.getsizeof(s) for s in hub._subscribers.values())
        rows["hub: channel subscriber set, per connection"] = round(subs / n)
        rows["hub: _rooms_of dict, per connection"] = round(sys.getsizeof(hub._rooms_of) / n)
    from fastws import keepalive

    wheels = keepalive._wheels.get(ws._loop, {})
    buckets = sum(sys.getsizeof(b) for w in wheels.values() for b in w._buckets.values()) + sum(
        sys.getsizeof(w._buckets) for w in wheels.values()
    )
    rows["keepalive wheel buckets, per connection"] = round(buckets / n)
    rows["total of the above"] = sum(v for k, v in rows.items() if isinstance(v, int))
    return rows


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from fastws import Config, Server

    app = Million() if args.app == "listener" else handler
    server = Server(app, Config(port=0, ping_interval=30.0, log_level="warning"))
    await server.start()
    port = server.port
    binary = build("million")
    await asyncio.sleep(0.2)
    # Warm-up: a few connections first, so that lazily created per-process state (the hub's
    # channel, the wheel, the shared receive buffer, code objects) is in the baseline.
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()

    def spawn(n: int, first: int) -> subprocess.Popen[str]:
        argv = [
            str(binary), "--port", str(port), "--conns", str(n), "--first", str(first),
            # Source ports below the ephemeral range (32768-60999 by default): other clients'
            # connections on the same 127.0.0.x addresses never hold them.
            "--src-count", "4", "--port-base", "21000" if first else "20000",
            "--key", key, "--accept", accept, "--max-seconds", "300",
        ]  # fmt: skip
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    async def until(count: int) -> None:
        deadline = time.monotonic() + 120
        while sum(1 for c in server._connections if c._open) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("connections did not open")
            await asyncio.sleep(0.2)

    warm = spawn(50, 0)
    await until(50)
    await asyncio.sleep(1)
    gc.collect()
    base_rss = rss()
    if not args.no_trace:
        tracemalloc.start(args.frames)
    tracing = tracemalloc.is_tracing()
    snap0 = tracemalloc.take_snapshot() if tracing else None
    t_alloc0 = tracemalloc.get_traced_memory()[0]
    client = spawn(args.connections, 1000)  # ports 21000 + 250 + i / 4 (the warm-up: 20000 + i / 4)
    await until(50 + args.connections)
    await asyncio.sleep(args.settle)
    gc.collect()
    rss1 = rss()
    snap1 = tracemalloc.take_snapshot() if tracing else None
    t_alloc1 = tracemalloc.get_traced_memory()[0]
    n = args.connections
    stats = snap1.compare_to(snap0, "traceback") if snap1 and snap0 else []
    by_line: dict[str, int] = {}
    for st in stats:
        frames = list(st.traceback)  # oldest first
        label = None
        for fr in reversed(frames):  # the innermost line of fastws or bench
            if "/fastws/" in fr.filename or "/bench/" in fr.filename:
                label = f"{fr.filename.split('/fastws/')[-1]}:{fr.lineno}"
                break
        if label is None:
            fr = frames[-1]
            label = f"{Path(fr.filename).name}:{fr.lineno} (no fastws frame)"
        by_line[label] = by_line.get(label, 0) + st.size_diff
    lines_src: dict[str, str] = {}
    for label in by_line:
        path, _, lineno = label.partition(":")
        file = Path(__file__).resolve().parent.parent / "fastws" / path
        if file.exists():
            lineno = lineno.split()[0]
            lines_src[label] = file.read_text().splitlines()[int(lineno) - 1].strip()[:90]
    top = sorted(by_line.items(), key=lambda kv: -kv[1])[: args.top]
    sample = next(c for c in server._connections if c._open and c.request_path == "/")
    objects = one_connection(sample, server)
    tracemalloc.stop()
    for proc in (client, warm):
        assert proc.stdin is not None
        proc.stdin.write("Q\n")
        proc.stdin.flush()
    for proc in (client, warm):
        proc.wait(60)
    return {
        "connections": n,
        "app": args.app,
        "rss_per_conn": round((rss1 - base_rss) / n),
        "tracemalloc_per_conn": round((t_alloc1 - t_alloc0) / n),
        "by_line_per_conn": [
            {"where": k, "bytes": round(v / n, 1), "source": lines_src.get(k, "")} for k, v in top
        ],
        "one_connection_getsizeof": objects,
        "python": sys.version.split()[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument(
        "--app",
        choices=["listener", "coroutine"],
        default="listener",
        help="bench.million_app's Million listener or its coroutine handler",
    )
    p.add_argument("--frames", type=int, default=12, help="tracemalloc frames kept")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json", type=Path, help="write the result here too")
    p.add_argument(
        "--no-trace", action="store_true", help="RSS only (tracemalloc's own memory inflates RSS)"
    )
    args = p.parse_args()
    import uvloop

    result = uvloop.run(measure(args))
    n = result["connections"]
    print(
        f"{n:,} idle connections ({args.app}), one process: RSS {result['rss_per_conn']} B per connection,"
        f" tracemalloc {result['tracemalloc_per_conn']} B"
        + ("" if args.no_trace else " (tracing itself adds to RSS: see --no-trace)")
    )
    print("\nStill allocated per connection, by the line that allocated it:")
    for row in result["by_line_per_conn"]:
        print(f"  {row['bytes']:8.1f} B  {row['where']:42s} {row['source']}")
    print("\nOne connection's objects (sys.getsizeof):")
    for k, v in result["one_connection_getsizeof"].items():
        print(f"  {v if isinstance(v, int) else json.dumps(v)!s:>8}  {k}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
