"""A native fastws handler beside an ASGI app on one port (tests/asgi/side_by_side.py): the
handler is a registered WebSocket route, everything else is the app's; channels are shared."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import REPO_ROOT, free_port


@pytest.fixture
def server() -> Iterator[int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.asgi.side_by_side", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_native_handler_and_asgi_app_on_one_port(server: int) -> None:
    """/native is the fastws handler, /ws and / are the Starlette app's; a message the ASGI
    app publishes on a channel reaches the native handler's subscription."""

    async def main() -> tuple[Any, ...]:
        base = f"ws://127.0.0.1:{server}"
        async with (
            websockets.connect(f"{base}/native") as native,
            websockets.connect(f"{base}/ws") as asgi,
        ):
            await native.send("hi")
            from_native = await native.recv()
            await asgi.send("hi")
            from_asgi = await asgi.recv()
            async with httpx.AsyncClient() as client:
                page = (await client.get(f"http://127.0.0.1:{server}/")).json()
                await client.post(f"http://127.0.0.1:{server}/publish/red", content=b"to red")
            published = await native.recv()
        return from_native, from_asgi, page, published

    from_native, from_asgi, page, published = asyncio.run(main())
    assert from_native == "native: hi"
    assert from_asgi == "hi"
    assert page["greeting"] == "hello from lifespan"
    assert published == "to red"
