"""Large binary messages between a browser and fastws, and how fast they go.

    python -m examples.streaming            # then open http://127.0.0.1:8001/

Upload: the page sends a file (or N MiB of random bytes) as one ArrayBuffer; the handler reads
it with `ws.stream()` as it arrives, in pieces of up to 1 MiB that the kernel wrote in place,
hashes each piece (SHA-256) and counts its byte values with numpy on a zero-copy view
(`piece.array()`), so a message of any size is processed without ever being held whole; then
it answers with the size, the hash, the byte entropy and its own MB/s. The page checks the hash
against its own (WebCrypto) and shows both MB/s.

Download: the page asks for N MiB; the handler sends a text header (size, SHA-256) and then
one binary message straight from a numpy array (no copy); the page times it and checks the
hash.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastws
from examples.pages import serve_page

PAGE = Path(__file__).with_name("index.html")
#: Largest upload accepted (the server's max_message_size) and largest download served.
MAX_SIZE = 1 << 30
MAX_DOWNLOAD = 256 << 20


async def handler(ws: fastws.WebSocket) -> None:
    """Each message is either a text command ({"download": bytes}) or an upload."""
    while True:
        digest = hashlib.sha256()
        counts = np.zeros(256, dtype=np.int64)
        size = pieces = 0
        started = None
        async for piece in ws.stream():
            if isinstance(piece, str):
                await _command(ws, json.loads(piece))
                continue
            if started is None:
                started = time.perf_counter()
            with piece:  # gives the piece's memory back at the end of the block
                digest.update(piece.data)
                counts += np.bincount(piece.array(), minlength=256)
                size += len(piece)
                pieces += 1
        if started is not None:
            seconds = max(time.perf_counter() - started, 1e-9)
            await ws.send(
                json.dumps(
                    {
                        "kind": "upload",
                        "bytes": size,
                        "pieces": pieces,
                        "sha256": digest.hexdigest(),
                        "entropy": _entropy(counts),
                        "seconds": seconds,
                        "mb_per_s": size / seconds / 1e6,
                    }
                )
            )


async def _command(ws: fastws.WebSocket, command: dict[str, Any]) -> None:
    size = int(command.get("download", 0))
    if not 0 <= size <= MAX_DOWNLOAD:
        await ws.send(json.dumps({"kind": "error", "error": f"download at most {MAX_DOWNLOAD}"}))
        return
    data = np.random.default_rng().integers(0, 256, size, dtype=np.uint8)
    header = {"kind": "download", "bytes": size, "sha256": hashlib.sha256(data.data).hexdigest()}
    await ws.send(json.dumps(header))
    await ws.send(data)  # sent from the array's memory, no copy
    await ws.drain()  # the array must not change (or go) before it is written


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy of the byte values, in bits per byte (8 for random data)."""
    total = int(counts.sum())
    if not total:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


async def main(host: str, port: int, http_port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fastws.serve(handler, host=host, port=port, max_message_size=MAX_SIZE) as server:
        pages = await serve_page(PAGE, host, http_port, f"ws://{host}:{server.port}/")
        page_port = pages.sockets[0].getsockname()[1]
        print(
            f"open http://{host}:{page_port}/  (WebSocket on ws://{host}:{server.port}/)",
            flush=True,
        )
        await stop.wait()
        pages.close()


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.streaming", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="the WebSocket port")
    parser.add_argument("--http-port", type=int, default=8001, help="the page's port")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.host, args.port, args.http_port))
    else:
        uvloop.run(main(args.host, args.port, args.http_port))
