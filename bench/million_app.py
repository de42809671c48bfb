"""The server application of bench/million.py.

Every connection subscribes to one channel and echoes what it receives (the load generator's
sample connections check the echoes); a connection to /publish publishes each message it
sends on that channel, to every connection in every worker.

    fastws serve bench.million_app:handler --workers 60
"""

from __future__ import annotations

from typing import Any

CHANNEL = "all"
PUBLISH_PATH = "/publish"


async def handler(ws: Any) -> None:
    if ws.request_path == PUBLISH_PATH:
        async for message in ws.messages():
            await ws.server.publish(
                CHANNEL, message if isinstance(message, str) else bytes(message)
            )
        return
    ws.subscribe(CHANNEL)
    async for message in ws.messages():
        await ws.send(message, release=True)
