"""Handler apps for the production-parity tests, loaded by the server as
``tests.server.parity_apps:NAME``. Written against the public API only."""

from __future__ import annotations

import json
from typing import Any


async def invert_in_place(ws: Any) -> None:
    """Invert every byte of each binary message in place, through `.array()`, and send the
    same message back: works only if the message's memory is writable."""
    async for message in ws.messages():
        if isinstance(message, str):
            await ws.send(message)
            continue
        try:
            array = message.array()
            array ^= 0xFF
        except (TypeError, ValueError) as exc:  # read-only memory
            await ws.send(f"not writable: {exc}")
            continue
        await ws.send(message, release=True)


async def report_request(ws: Any) -> None:
    """Send what the handler sees of the request and the peer as one JSON text message."""
    headers = ws.request.headers
    await ws.send(
        json.dumps(
            {
                "headers": dict(headers),
                "x_forwarded_for": headers.get_all("X-Forwarded-For"),
                "remote_address": list(ws.remote_address) if ws.remote_address else None,
                "path": ws.request.path,
            }
        )
    )
    async for message in ws:
        await ws.send(message)
