"""Callback-style (Listener) apps for tests/test_listener.py, loaded by the server process as
``tests.listener_apps:NAME``. Written against the public API only (README)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import fastws

#: In the exception `Failing` raises, so the test can find it in the server log.
FAILURE_MARKER = "deliberate-listener-failure-51c2"


class Report(fastws.Listener):
    """Says what it sees: "open" at on_open; for each message its type and size, then the
    message itself echoed; "closed?" answers with the close codes seen by on_close so far
    in this worker (and whether on_close came once per on_open)."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed: list[list[Any]] = []

    def on_open(self, ws: fastws.WebSocket) -> None:
        self.opened += 1
        ws.send_nowait("open")

    def on_message(self, ws: fastws.WebSocket, message: str | fastws.Message) -> None:
        if message == "closed?":
            ws.send_nowait(json.dumps({"opened": self.opened, "closed": self.closed}))
            return
        if message == "bye":
            ws.close_nowait(4000, "bye")
            return
        if message == "later":
            # A task may use the coroutine API on the same connection.
            asyncio.get_running_loop().create_task(self._later(ws))
            return
        kind = "text" if isinstance(message, str) else type(message).__name__
        ws.send_nowait(json.dumps({"type": kind, "size": len(message)}))
        ws.send_nowait(message)

    async def _later(self, ws: fastws.WebSocket) -> None:
        await asyncio.sleep(0.05)
        await ws.send("later")

    def on_close(self, ws: fastws.WebSocket, code: int, reason: str) -> None:
        self.closed.append([code, reason])


class Failing(fastws.Listener):
    """Echoes, but raises on the message "fail"."""

    def on_message(self, ws: fastws.WebSocket, message: str | fastws.Message) -> None:
        if message == "fail":
            raise RuntimeError(FAILURE_MARKER)
        ws.send_nowait(message)


class FailingOpen(fastws.Listener):
    """Raises in on_open: the connection is closed 1011 before any message."""

    def on_open(self, ws: fastws.WebSocket) -> None:
        raise RuntimeError(FAILURE_MARKER)

    def on_message(self, ws: fastws.WebSocket, message: str | fastws.Message) -> None:
        ws.send_nowait(message)


class NeverReads:
    """Duck-typed (no Listener base): keeps every message, answers nothing."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def on_message(self, ws: Any, message: Any) -> None:
        self.kept.append(len(message))


class Flood(fastws.Listener):
    """On "go", sends 1 MiB messages with send_nowait until the peer stops reading
    (`writing_paused`), then goes on when a task sees the buffer drained: what a server that
    pushes data unprompted should do."""

    def on_message(self, ws: fastws.WebSocket, message: str | fastws.Message) -> None:
        if message == "go":
            asyncio.get_running_loop().create_task(self._flood(ws))

    async def _flood(self, ws: fastws.WebSocket) -> None:
        payload = bytearray(1 << 20)
        for n in range(20):
            payload[:8] = n.to_bytes(8, "big")
            ws.send_nowait(bytes(payload))
            if ws.writing_paused:
                await ws.drain()
