"""The server application of bench/million.py, in both handler styles.

Every connection subscribes to one channel and echoes what it receives (the load generator's
sample connections check the echoes); a connection to /publish publishes each message it
sends on that channel, to every connection in every worker.

`Million` is the callback-style listener (no task or coroutine per connection: the cheapest
idle connection); `handler` is the same application as a coroutine handler.

    fastws serve bench.million_app:Million --workers 60
    fastws serve bench.million_app:handler --workers 60
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastws import Listener

CHANNEL = "all"
PUBLISH_PATH = "/publish"


class Million(Listener):
    def on_open(self, ws: Any) -> None:
        if ws.request_path != PUBLISH_PATH:
            ws.subscribe(CHANNEL)

    def on_message(self, ws: Any, message: Any) -> None:
        if ws.request_path == PUBLISH_PATH:
            data = message if isinstance(message, str) else bytes(message)
            asyncio.get_running_loop().create_task(ws.server.publish(CHANNEL, data))
        else:
            ws.send_nowait(message, release=True)


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
