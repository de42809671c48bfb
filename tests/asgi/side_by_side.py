"""A fastws handler and an ASGI app on one port: python -m tests.asgi.side_by_side PORT.

The Starlette app of tests/asgi/apps.py serves every request, except WebSocket upgrades to
/native, which go to a native fastws handler registered as a route (fastws/server/routes.py).
Both share the server's channels.
"""

from __future__ import annotations

import asyncio
import sys

from fastws import Config, Server
from fastws.server.routes import WebSocketRoute
from tests.asgi.apps import starlette_app


async def native(ws: object) -> None:
    ws.subscribe("red")  # type: ignore[attr-defined]  # a ServerProtocol
    async for message in ws:  # type: ignore[attr-defined]
        await ws.send(f"native: {message}")  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = Server(starlette_app, Config(port=port))
    server.routes.add_websocket("/native", WebSocketRoute(native))
    await server.start()
    print("listening", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
