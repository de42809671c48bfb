"""Test-only applications for the process tests, loaded by workers as ``tests.process.apps:NAME``."""

from __future__ import annotations

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
