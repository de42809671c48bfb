"""Fan-out server on the `websockets` library: its `broadcast()` in one process.

    python bench/servers/fanout_websockets.py PORT [--uvloop]

`/sub`: the connection joins the subscribers and gets "ok"; `/pub`: every message it sends is
passed to `websockets.broadcast(subscribers, message)`. Compression off, no keepalive pings,
backlog 2048, as for the other peers (see bench/fanout.py).
"""

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

subscribers: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path == "/pub":
        async for message in ws:
            broadcast(subscribers, message)
        return
    subscribers.add(ws)
    try:
        await ws.send("ok")
        await ws.wait_closed()
    finally:
        subscribers.discard(ws)


async def main(host: str, port: int) -> None:
    async with serve(
        handler, host, port, compression=None, max_size=None, ping_interval=None, backlog=2048
    ):
        print("listening", flush=True)
        await asyncio.get_running_loop().create_future()  # until SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))
