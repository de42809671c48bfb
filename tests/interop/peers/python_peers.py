"""asyncio peer servers for tests/interop: the `websockets` library and aiohttp.

    python -m tests.interop.peers.python_peers {websockets|aiohttp}

Both speak the peers' common protocol (tests/interop/README.md).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tests.interop.peers.common import MAX_MESSAGE, PATHS, TAKEOVER, command, fragments, log

HOST = "127.0.0.1"


async def run_websockets() -> None:
    """One server per compression setting (websockets negotiates extensions per server)."""
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    async def handler(ws: Any) -> None:
        try:
            async for message in ws:
                parsed = command(message) if isinstance(message, str) else None
                if parsed is None:
                    await ws.send(message)
                elif parsed[0] == "!close":
                    await ws.close(int(parsed[1][0]), " ".join(parsed[1][1:]))
                elif parsed[0] == "!ping":
                    payload = " ".join(parsed[1])
                    await (await ws.ping(payload.encode()))
                    await ws.send(f"pong:{payload}")
                elif parsed[0] == "!fragments":
                    await ws.send(fragments(int(parsed[1][0])))  # an iterable: fragmented
        except ConnectionClosed:
            pass
        log({"event": "close", "code": ws.close_code, "reason": ws.close_reason or ""})

    urls: dict[str, str] = {}
    servers = []
    for path in PATHS:
        if path == "off":
            options: dict[str, Any] = {"compression": None}
        else:
            server_takeover, client_takeover = TAKEOVER[path]
            factory = ServerPerMessageDeflateFactory(
                server_no_context_takeover=not server_takeover,
                client_no_context_takeover=not client_takeover,
            )
            options = {"extensions": [factory], "compression": None}
        server = await serve(handler, HOST, 0, max_size=MAX_MESSAGE, ping_interval=None, **options)
        servers.append(server)
        urls[path] = f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/{path}"
    log(urls)
    await asyncio.Future()


async def run_aiohttp() -> None:
    """One route per setting. aiohttp's server has no takeover settings of its own: it accepts
    what the client's offer asks for, so the takeover paths differ only by the client's offer.
    It has no API to send a fragmented message: "!fragments" answers "unsupported"."""
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        compress = request.path != "/off"
        # autoping off: pings and pongs reach the loop (pongs answer "!ping"); pings answered here.
        ws = web.WebSocketResponse(compress=compress, max_msg_size=MAX_MESSAGE, autoping=False)
        await ws.prepare(request)
        pinged: list[str] = []
        closed = {"code": 1006, "reason": ""}
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:  # answered by aiohttp (autoclose)
                closed = {"code": msg.data, "reason": msg.extra or ""}
                break
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                closed["code"] = ws.close_code or 1006
                break
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG and pinged:
                await ws.send_str(f"pong:{pinged.pop(0)}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                parsed = command(msg.data)
                if parsed is None:
                    await ws.send_str(msg.data)
                elif parsed[0] == "!close":
                    await ws.close(code=int(parsed[1][0]), message=" ".join(parsed[1][1:]).encode())
                elif parsed[0] == "!ping":
                    pinged.append(" ".join(parsed[1]))
                    await ws.ping(pinged[-1].encode())
                else:
                    await ws.send_str("unsupported")
        log({"event": "close", **closed})
        return ws

    app = web.Application()
    for path in PATHS:
        app.router.add_get(f"/{path}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    log({path: f"ws://{HOST}:{port}/{path}" for path in PATHS})
    await asyncio.Future()


if __name__ == "__main__":
    kind = sys.argv[1]
    asyncio.run({"websockets": run_websockets, "aiohttp": run_aiohttp}[kind]())
