"""Fan-out apps for fastws (bench/fanout.py):

    fastws serve bench.servers.fanout_fastws:publish --workers 2    # channels, across workers
    fastws serve bench.servers.fanout_fastws:direct --workers 0     # fastws.broadcast(), 1 process
    fastws serve bench.servers.fanout_fastws:pipelined --workers 2 --broker redis://...

`/sub`: subscribe (to the channel "fan", or to the app's own set for `direct`) and get "ok";
`/pub`: every message received is published on "fan" (`publish`) or broadcast to the set
(`direct`, the same thing `websockets.broadcast()` does in bench/servers/fanout_websockets.py).

`pipelined` publishes like `publish` but does not wait for each publish before reading the
next message: each one is a task (started in order, so they reach the broker in order), all
awaited when the publisher leaves. With Redis, `await fastws.publish()` returns once Redis has
acknowledged the message, a round trip through the worker's event loop: a publisher that
awaits each one publishes at most one message per loop iteration of its worker.
"""

from __future__ import annotations

import asyncio
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


async def pipelined(ws: Any) -> None:
    if ws.request.path == "/pub":
        pending = [asyncio.ensure_future(fastws.publish("fan", message)) async for message in ws]
        await asyncio.gather(*pending)
        return
    await publish(ws)


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
