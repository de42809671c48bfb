"""fastws' clients against WebSocket servers nobody here wrote.

Fixtures
--------
``peer``    a peer server process (package scope), once for each of PEERS: node `ws`,
            WebSocket-Node, uWebSockets (socketify), `websockets`, aiohttp. All speak the
            common protocol of README.md; ``peer.urls[setting]`` is the URL of one
            compression setting ("off", "none", "server", "client", "both"),
            ``peer.wait_close(reason)`` the close with that reason the server logged.
``client``  "asyncio" (fastws.connect) or "sync" (fastws.sync.connect) behind one blocking
            interface (``client.connect(url, **options)``), so each scenario is written once.

Only the clients' public API is used: fastws.connect, fastws.sync.connect and the methods the
README documents. A missing peer (no Node, npm package, or Python package) skips its tests,
unless FASTWS_TEST_BROWSERS=required (.ci/run), which makes it a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

import fastws
import fastws.sync
from tests.browser.external import end_process_group, node_command, node_modules, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PEERS = ["ws", "websocket-node", "uwebsockets", "websockets", "aiohttp"]
STARTUP_TIMEOUT = 20.0
#: A generous bound on waiting for one message or event, so a hang fails instead of blocking.
TIMEOUT = 20.0


def peer_command(name: str) -> list[str]:
    """The command that runs peer `name`, or skip/fail (unavailable) if it cannot run here."""
    if name in ("ws", "websocket-node"):
        package = "ws" if name == "ws" else "websocket"
        modules = node_modules(package)
        return [node_command()[0], str(PEERS_DIR / "node_peers.mjs"), name, str(modules)]
    module = {"uwebsockets": "socketify", "websockets": "websockets", "aiohttp": "aiohttp"}[name]
    if find_spec(module) is None:
        unavailable(f"{name}: Python package {module} is not installed: pip install -e '.[test]'")
    if name == "uwebsockets":
        return [sys.executable, "-m", "tests.interop.peers.socketify_peer"]
    return [sys.executable, "-m", "tests.interop.peers.python_peers", name]


class PeerServer:
    """A running peer: its URLs, and the JSON events it prints (one per closed connection)."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self.urls: dict[str, str] = self._events.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"peer {name} did not start: {self.stderr()}") from None

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_close(self, reason: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The {"event": "close", "code", "reason"} the server logged for a close with
        `reason` (other connections' closes, logged meanwhile, are passed over)."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                break
            if event.get("reason") == reason:
                return event
            seen.append(event)
        raise AssertionError(f"{self.name} logged no close {reason!r}: {seen} {self.stderr()}")

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL of what is left of its process group."""
        end_process_group(self.proc)
        for reader in self._readers:
            reader.join(5)  # they end at EOF, once the process is gone
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="package", params=PEERS)
def peer(request: pytest.FixtureRequest) -> Iterator[PeerServer]:
    server = PeerServer(request.param, peer_command(request.param))
    try:
        yield server
    finally:
        server.stop()


# --- the two clients behind one interface --------------------------------------------------


class SyncClient:
    """fastws.sync's ClientConnection."""

    name = "sync"

    def __init__(self) -> None:
        self.opened: list[Any] = []

    def connect(self, url: str, **options: Any) -> Any:
        ws = fastws.sync.connect(url, **options)
        self.opened.append(ws)
        return ws

    def recv(self, ws: Any) -> str | bytes:
        return ws.recv(timeout=TIMEOUT)

    def send(self, ws: Any, data: Any) -> None:
        ws.send(data)

    def ping(self, ws: Any, data: bytes = b"") -> float:
        return float(ws.ping(data, timeout=TIMEOUT))

    def close(self, ws: Any, code: int = 1000, reason: str = "") -> None:
        ws.close(code, reason)

    def close_all(self) -> None:
        for ws in self.opened:
            with contextlib.suppress(Exception):
                ws.close()


class AsyncClient:
    """fastws.connect's WebSocket, its coroutines run to completion one call at a time on a
    private event loop (between calls the loop is idle; the kernel buffers what arrives)."""

    name = "asyncio"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.opened: list[Any] = []

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, TIMEOUT))

    def connect(self, url: str, **options: Any) -> Any:
        ws = self._run(fastws.connect(url, **options))
        self.opened.append(ws)
        return ws

    def recv(self, ws: Any) -> str | bytes:
        return self._run(ws.recv())

    def send(self, ws: Any, data: Any) -> None:
        self._run(ws.send(data))

    def send_fragments(self, ws: Any, parts: list[Any]) -> None:
        self._run(ws.send_fragments(parts))

    def ping(self, ws: Any, data: bytes = b"") -> float:
        return self._run(ws.ping(data))

    def close(self, ws: Any, code: int = 1000, reason: str = "") -> None:
        self._run(ws.close(code, reason))

    def close_all(self) -> None:
        for ws in self.opened:
            with contextlib.suppress(Exception):
                self._run(ws.close())
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


@pytest.fixture(params=["asyncio", "sync"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    adapter = AsyncClient() if request.param == "asyncio" else SyncClient()
    try:
        yield adapter
    finally:
        adapter.close_all()
