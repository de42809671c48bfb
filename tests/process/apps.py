"""Test-only applications for the process tests, loaded by workers as ``tests.process.apps:NAME``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


async def report_pid(ws: Any) -> None:
    """Send this worker's pid as text, then echo."""
    await ws.send(str(os.getpid()))
    async for message in ws:
        await ws.send(message)


async def block_on_message(ws: Any) -> None:
    """Echo, except that the message "block" blocks the whole event loop (a stuck worker)."""
    await ws.send(str(os.getpid()))
    async for message in ws:
        if message == "block":
            time.sleep(3600)  # deliberately synchronous: the loop stops, and so does its heartbeat
        await ws.send(message)


def _hog(loop: asyncio.AbstractEventLoop, end: float) -> None:
    time.sleep(0.5)  # deliberately synchronous: nothing else runs meanwhile
    if time.monotonic() < end:
        loop.call_later(0.01, _hog, loop, end)


async def hog_on_message(ws: Any) -> None:
    """Echo; the message "hog" makes the worker busy for 4 s: its loop blocked 0.5 s at a time
    (a worker behind on thousands of connections, or starved of CPU, looks like this)."""
    await ws.send(str(os.getpid()))
    async for message in ws:
        if message == "hog":
            loop = asyncio.get_running_loop()
            loop.call_soon(_hog, loop, time.monotonic() + 4.0)
        await ws.send(message)
