"""HUP loads the application's new code; new code that cannot boot leaves the old one serving."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import websockets

from tests.conftest import free_port

from .helpers import children, spawn, wait_for

APP = """
async def handler(ws):
    await ws.send({version!r})
    async for message in ws:
        await ws.send(message)
"""


def greeting(port: int) -> str:
    async def main() -> str:
        async with websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
            return str(await ws.recv())

    return asyncio.run(main())


def read_log(proc: object, lines: list[str], text: str) -> bool:
    """Collect the server's stderr lines until one contains `text`."""
    stream = proc.stderr  # type: ignore[attr-defined]
    while line := stream.readline():
        lines.append(line)
        if text in line:
            return True
    return False


def test_hup_imports_the_changed_application(tmp_path: Path) -> None:
    name = f"reload_app_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{name}.py"
    source.write_text(APP.format(version="v1"))
    port = free_port()
    with spawn(f"{name}:handler", "--port", str(port), "--workers", "2", cwd=tmp_path) as proc:
        lines: list[str] = []
        assert read_log(proc, lines, "serving (slot 1)") or read_log(proc, lines, "serving")
        wait_for(lambda: greeting(port) == "v1", 10, "v1 to serve")
        old = children(proc.pid)

        source.write_text(APP.format(version="v2"))
        proc.send_signal(signal.SIGHUP)
        assert read_log(proc, lines, "reload done"), "".join(lines)
        # The old workers stop accepting when they handle their TERM, an instant later.
        wait_for(lambda: not children(proc.pid) & old, 10, "the old workers to exit")
        assert {greeting(port) for _ in range(10)} == {"v2"}

        source.write_text("def broken(:\n")
        proc.send_signal(signal.SIGHUP)
        assert read_log(proc, lines, "reload failed, the old workers keep serving"), "".join(lines)
        log = "".join(lines)
        assert any("failed to boot" in line and "SyntaxError" in line for line in lines), log
        assert proc.poll() is None
        assert {greeting(port) for _ in range(10)} == {"v2"}


HOOKS = """
async def handler(ws):
    await ws.send(ws.subprotocol or "-")


def stamp(ws, request, response):
    response.headers.append(("X-Version", {version!r}))


def pick(ws, offered):
    return offered[{index}]
"""


def test_hup_imports_the_changed_hooks(tmp_path: Path) -> None:
    """The application's hooks reload with it: process_response and select_subprotocol of the
    new code answer after a HUP (a deploy changing a hook must not keep the old one)."""
    name = f"reload_hooks_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{name}.py"
    source.write_text(HOOKS.format(version="v1", index=0))
    port = free_port()

    def seen() -> tuple[str, str]:
        async def main() -> tuple[str, str]:
            url = f"ws://127.0.0.1:{port}/"
            async with websockets.connect(url, subprotocols=["a", "b"], open_timeout=10) as ws:
                return str(await ws.recv()), ws.response.headers["X-Version"]

        return asyncio.run(main())

    hooks = ["--process-response", f"{name}:stamp", "--select-subprotocol", f"{name}:pick"]
    with spawn(f"{name}:handler", "--port", str(port), *hooks, cwd=tmp_path) as proc:
        lines: list[str] = []
        assert read_log(proc, lines, "serving"), "".join(lines)
        wait_for(lambda: seen() == ("a", "v1"), 10, "v1 to serve")
        old = children(proc.pid)
        source.write_text(HOOKS.format(version="v2", index=1))
        proc.send_signal(signal.SIGHUP)
        assert read_log(proc, lines, "reload done"), "".join(lines)
        wait_for(lambda: not children(proc.pid) & old, 10, "the old workers to exit")
        assert {seen() for _ in range(5)} == {("b", "v2")}
