"""python -m bench.asgi_path: the CPU an ASGI WebSocket message costs in fastws, without sockets.

Scenario a of the matrix (one 64-byte message in flight) is mostly the kernel's: the
syscalls and the wake-up of each message (`python -m bench profile --tool perf`). What a
server written in Python can still save is its own Python code per message; this measures
it on the real code path, fed from memory:

- **starlette alone**: the Starlette echo app (`bench/servers/starlette_echo.py`) driven
  with a `receive` and a `send` that never wait: Starlette's and the endpoint's own cost,
  the same on every server (the floor of any ASGI server).
- **fastws ASGI**: the same app on fastws (`ServerProtocol.upgrade` with a transport that
  writes nowhere): one masked 64-byte text frame handed to `buffer_updated`, then the loop
  runs until the echo's frame was written; per message.
- **fastws coroutine** (`async for message in ws: await ws.send(message)`) and **fastws
  listener** (the built-in callback echo) on the same harness, for comparison.

The per-message figure includes one event-loop iteration and the driver's own await (the
same for every row but the first). Compare rows of one run; `--messages N --repeat R`,
`--rows asgi,coroutine` for some of them. `--instructions` counts instructions per message
under valgrind instead of CPU time: deterministic, so an A/B of a change to the path needs
one run in each tree (`git worktree add /tmp/before HEAD~1`, build its C module in place,
then `cd /tmp/before && python -m bench.asgi_path --instructions --rows asgi` and the same
here), on a machine as busy as it likes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from fastws.config import Config
from fastws.protocol.frames import encode_header
from fastws.protocol.handshake import RequestParser
from fastws.protocol.mask import unmask
from fastws.server.protocol import ServerProtocol
from fastws.server.server import Server

from .micro.test_dispatch import NullTransport

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class CountingTransport(NullTransport):
    """A transport whose writes go nowhere, counted."""

    def __init__(self) -> None:
        self.writes = 0
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.writes += 1

    def writelines(self, data: Any) -> None:
        self.writes += 1

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close


def text_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    return encode_header(1, len(payload), fin=True, mask=key) + unmask(payload, key)


async def _through_server(app: Any, n: int) -> float:
    """CPU seconds per message of `n` echoes through fastws serving `app`."""
    server = Server(app, Config(ping_interval=None, log_level="warning"))
    transport = CountingTransport()
    parser = RequestParser(max_request_line=8192, max_headers=100, max_header_size=65536)
    request = parser.feed(memoryview(UPGRADE))
    assert request is not None
    ws = ServerProtocol.upgrade(server, transport, request, b"")  # type: ignore[arg-type]
    for _ in range(100):  # the app accepts (or the listener opens)
        await asyncio.sleep(0)
        if ws._open:
            break
    assert ws._open, "the application did not accept"
    frame = text_frame(b"x" * 64)
    size = len(frame)

    def feed() -> None:
        buf = ws.get_buffer(-1)
        buf[:size] = frame
        ws.buffer_updated(size)

    spent = await _drive(transport, feed, n)
    ws.connection_lost(None)
    for _ in range(10):
        await asyncio.sleep(0)
    return spent


async def _drive(transport: CountingTransport, feed: Callable[[], None], n: int) -> float:
    """CPU seconds per message: `feed()` one message, run the loop until its echo is
    written; 1,000 to warm up, then `n` measured."""

    async def echo_once() -> None:
        before = transport.writes
        feed()
        while transport.writes == before:
            await asyncio.sleep(0)

    for _ in range(1000):
        await echo_once()
    start = time.process_time()
    for _ in range(n):
        await echo_once()
    return (time.process_time() - start) / n


async def _through_uvicorn(app: Any, n: int, ws: str) -> float:
    """The same on uvicorn's WebSocket protocol (`ws`: websockets or wsproto), as its HTTP
    protocol hands an upgrade over: the request's bytes to the WebSocket protocol."""
    import uvicorn
    from uvicorn.server import ServerState

    warnings.simplefilter("ignore")  # deprecation warnings of websockets' legacy API

    config = uvicorn.Config(
        app, ws=ws, ws_ping_interval=None, ws_max_size=64 << 20, ws_per_message_deflate=False,
        lifespan="off", log_level="warning",
    )  # fmt: skip
    config.load()
    transport = CountingTransport()
    protocol = config.ws_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[misc]
    transport.set_protocol(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(UPGRADE)
    for _ in range(100):  # the app accepts: the 101 is written
        await asyncio.sleep(0)
        if transport.writes:
            break
    assert transport.writes, "the application did not accept"
    frame = text_frame(b"x" * 64)
    spent = await _drive(transport, lambda: protocol.data_received(frame), n)
    protocol.connection_lost(None)
    for _ in range(10):
        await asyncio.sleep(0)
    return spent


async def _starlette_alone(app: Any, n: int) -> float:
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "scheme": "ws", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [], "client": ("127.0.0.1", 2), "server": ("127.0.0.1", 1),
        "subprotocols": [], "state": {}, "extensions": {},
    }  # fmt: skip
    count = 0
    text = "x" * 64

    async def receive() -> dict[str, Any]:
        nonlocal count
        count += 1
        if count == 1:
            return {"type": "websocket.connect"}
        if count > n + 1:
            return {"type": "websocket.disconnect", "code": 1000, "reason": ""}
        return {"type": "websocket.receive", "text": text}

    async def send(message: dict[str, Any]) -> None:
        pass

    start = time.process_time()
    await app(scope, receive, send)
    return (time.process_time() - start) / n


#: the rows: key -> label (`--rows KEY,...`, `--instructions`)
LABELS = {
    "starlette": "starlette alone (receive/send never wait)",
    "asgi": "fastws ASGI, Starlette echo",
    "coroutine": "fastws coroutine echo",
    "listener": "fastws listener echo",
    "uvicorn-websockets": "uvicorn websockets, Starlette echo",
    "uvicorn-wsproto": "uvicorn wsproto, Starlette echo",
    "uvicorn-sansio": "uvicorn websockets-sansio, Starlette echo",
}


def _row(key: str, n: int) -> Callable[[], Any]:
    """The coroutine factory that measures row `key` over `n` messages."""
    from fastws.apps.echo import Echo, echo

    from .servers.starlette_echo import app

    return {
        "starlette": lambda: _starlette_alone(app, n),
        "asgi": lambda: _through_server(app, n),
        "coroutine": lambda: _through_server(echo, n),
        "listener": lambda: _through_server(Echo(), n),
        "uvicorn-websockets": lambda: _through_uvicorn(app, n, "websockets"),
        "uvicorn-wsproto": lambda: _through_uvicorn(app, n, "wsproto"),
        "uvicorn-sansio": lambda: _through_uvicorn(app, n, "websockets-sansio"),
    }[key]


def instructions(key: str, n: int) -> float:
    """Instructions per message of row `key`, counted by valgrind (callgrind): the
    difference between runs of `n` and `3n` messages over 2n, so start-up, imports and
    warm-up cancel out. Deterministic, unlike CPU time on a shared machine: an A/B of a
    per-message change is one number per side, whatever else the machine does."""

    def count(messages: int) -> int:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-m", "bench.asgi_path", "--rows", key,
             "--messages", str(messages), "--repeat", "1"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from valgrind: {proc.stderr[-500:]}")
        return int(found.group(1))

    return (count(3 * n) - count(n)) / (2 * n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_path", description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--rows", default=",".join(LABELS), help=f"comma-separated, of: {', '.join(LABELS)}"
    )
    parser.add_argument(
        "--instructions", action="store_true",
        help="count instructions per message under valgrind instead (messages default 5,000)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    keys = [key for key in args.rows.split(",") if key]
    unknown = [key for key in keys if key not in LABELS]
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}")
    if args.instructions:
        if shutil.which("valgrind") is None:
            parser.error("--instructions needs valgrind (apt-get install valgrind)")
        n = args.messages if "--messages" in (argv or sys.argv) else 5_000
        print(f"instructions per 64-byte echo (callgrind, {3 * n:,} - {n:,} messages)")
        for key in keys:
            print(f"{instructions(key, n):10,.0f}  {LABELS[key]}")
        return 0

    import uvloop

    results: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(args.repeat):  # rows interleaved: a busy moment hits all of them alike
        for key in keys:
            results[key].append(uvloop.run(_row(key, args.messages)()))
    print(f"CPU µs per 64-byte echo, median of {args.repeat} x {args.messages:,} messages")
    for key, values in results.items():
        print(f"{statistics.median(values) * 1e6:8.2f}  {LABELS[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
