"""A chat with rooms, on fastws' channels.

    python -m examples.chat                 # then open http://127.0.0.1:8001/?room=lobby

Each connection joins one room at a time (`ws.subscribe(room)`); what someone says is
published on the room (`ws.publish(room, ...)`) and reaches every subscriber of that room in
every worker (the demo runs `fastws serve` with two workers: two people in the same room are
often on different workers), and nobody in another room. The message is framed once per
worker and written to all of its subscribers.

From the page to the server, JSON: {"join": ROOM, "name": NAME} and {"say": TEXT}. From the
server, JSON events: {"kind": "joined" | "left" | "message" | "error", "room", "name", "text"}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fastws
from examples.pages import serve_page

PAGE = Path(__file__).with_name("index.html")
REPO = Path(__file__).resolve().parents[2]  # where `examples` is importable from
MAX_NAME, MAX_ROOM, MAX_TEXT = 40, 40, 2000


def _field(message: dict[str, Any], key: str, limit: int) -> str | None:
    value = message.get(key)
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())[:limit]  # one line, no surrounding blanks
    return value or None


async def _tell_room(ws: Any, room: str, event: str) -> None:
    """Publish on the room; if the broker cannot take it, say so to this connection only."""
    try:
        await ws.publish(room, event)
    except fastws.PublishError as exc:
        await ws.send(_event("error", room, "", f"not delivered: {exc}"))


def _event(kind: str, room: str, name: str, text: str = "") -> str:
    return json.dumps({"kind": kind, "room": room, "name": name, "text": text, "time": time.time()})


async def handler(ws: Any) -> None:
    """Join, say, switch rooms; "left" is published when the connection goes, however.

    `ws` is the server's connection (subscribe/unsubscribe/publish/server are server-side).
    """
    room: str | None = None
    name = "anonymous"
    try:
        async for raw in ws:
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                await ws.send(_event("error", room or "", name, "messages are JSON objects"))
                continue
            if "join" in message:
                new_room = _field(message, "join", MAX_ROOM)
                if new_room is None:
                    await ws.send(_event("error", room or "", name, "a room needs a name"))
                    continue
                name = _field(message, "name", MAX_NAME) or name
                if room is not None:
                    ws.unsubscribe(room)
                    await _tell_room(ws, room, _event("left", room, name))
                room = new_room
                ws.subscribe(room)
                await _tell_room(ws, room, _event("joined", room, name))
            elif room is None:
                await ws.send(_event("error", "", name, "join a room first"))
            else:
                text = _field(message, "say", MAX_TEXT)
                if text is not None:
                    await _tell_room(ws, room, _event("message", room, name, text))
    finally:
        if room is not None:
            # The connection is gone; the server still publishes for it (unless it is
            # stopping, and then nobody is left to tell).
            with contextlib.suppress(fastws.PublishError):
                await ws.server.publish(room, _event("left", room, name))


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    while proc.poll() is None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise SystemExit(f"fastws serve exited with {proc.returncode}")


async def main(host: str, port: int, http_port: int, workers: int) -> int:
    port = port or _free_port(host)
    # The chat server is the real command line: a master and `workers` worker processes.
    command = [sys.executable, "-m", "fastws", "serve", "examples.chat.server:handler"]
    command += ["--host", host, "--port", str(port), "--workers", str(workers)]
    command += ["--max-message-size", "64KiB"]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    chat = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=path))
    try:
        await _wait_listening(host, port, chat)
        pages = await serve_page(PAGE, host, http_port, f"ws://{host}:{port}/")
        page_port = pages.sockets[0].getsockname()[1]
        print(
            f"open http://{host}:{page_port}/?room=lobby  (chat on ws://{host}:{port}/)", flush=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ended = loop.run_in_executor(None, chat.wait)
        ended.add_done_callback(lambda _: stop.set())  # the chat server exited on its own
        await stop.wait()
        pages.close()
    finally:
        if chat.poll() is None:
            chat.terminate()  # the master closes every connection with 1001, then exits
    return await asyncio.get_running_loop().run_in_executor(None, chat.wait)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="the chat's WebSocket port")
    parser.add_argument("--http-port", type=int, default=8001, help="the page's port")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(main(args.host, args.port, args.http_port, args.workers)))
