"""Fan-out apps for fastws (bench/fanout.py):

    fastws serve bench.servers.fanout_fastws:publish --workers 2    # channels, across workers
    fastws serve bench.servers.fanout_fastws:direct --workers 0     # fastws.broadcast(), 1 process

`/sub`: subscribe (to the channel "fan", or to the app's own set for `direct`) and get "ok";
`/pub`: every message received is published on "fan" (`publish`) or broadcast to the set
(`direct`, the same thing `websockets.broadcast()` does in bench/servers/fanout_websockets.py).
"""

from __future__ import annotations

from typing import Any

import fastws

_members: set[Any] = set()


async def publish(ws: Any) -> None:
    if ws.request.path == "/pub":
        async for message in ws:
            await fastws.publish("fan", message)
        return
    ws.subscribe("fan")
    await ws.send("ok")
    await ws.wait_closed()


async def direct(ws: Any) -> None:
    if ws.request.path == "/pub":
        async for message in ws:
            ws.server.broadcast(_members, message)
        return
    _members.add(ws)
    try:
        await ws.send("ok")
        await ws.wait_closed()
    finally:
        _members.discard(ws)
