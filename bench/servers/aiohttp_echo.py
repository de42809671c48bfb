"""Echo server on aiohttp's web server, run on uvloop (its fastest deployment).

    python bench/servers/aiohttp_echo.py PORT [--compression] [--processes N]

Settings: compression off, or with --compression (scenario g) `compress=True`, its
permessage-deflate (window 15, context takeover unless the client asks for none); no
heartbeat, no message size limit, no access log, backlog 2048. --processes N: N processes,
each its own web.run_app on its own SO_REUSEPORT socket (multiproc.py), as aiohttp's docs
suggest for several cores without gunicorn.
"""

import argparse
import functools
import socket
import sys
from pathlib import Path

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
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()

    def run(sock: socket.socket | None = None) -> None:
        app = web.Application()
        app.router.add_get("/", functools.partial(echo, compress=args.compression))
        where = {"sock": sock} if sock is not None else {"host": args.host, "port": args.port}
        web.run_app(
            app,
            **where,
            backlog=2048,
            print=(lambda *_: print("listening", flush=True)) if sock is None else None,
            access_log=None,
            shutdown_timeout=1.0,
            loop=uvloop.new_event_loop(),
        )

    if args.processes > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from multiproc import serve

        serve(args.host, args.port, args.processes, run)
    else:
        run()
