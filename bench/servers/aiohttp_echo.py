"""Echo server on aiohttp's web server, run on uvloop (its fastest deployment).

    python bench/servers/aiohttp_echo.py PORT [--compression]

Settings: compression off, or with --compression (scenario g) `compress=True`, its
permessage-deflate (window 15, context takeover unless the client asks for none); no
heartbeat, no message size limit, no access log, backlog 2048.
"""

import argparse
import functools

import uvloop
from aiohttp import WSMsgType, web


async def echo(request: web.Request, compress: bool) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=compress, max_msg_size=0, heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", functools.partial(echo, compress=args.compression))
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        backlog=2048,
        print=lambda *_: print("listening", flush=True),
        access_log=None,
        shutdown_timeout=1.0,
        loop=uvloop.new_event_loop(),
    )
