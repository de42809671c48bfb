"""Echo server on the `websockets` library (its asyncio implementation).

    python bench/servers/websockets_echo.py PORT [--uvloop]

Settings: compression off (fastws has none yet; scenario g will turn it on for everyone),
no keepalive pings, no message size limit, backlog 2048 (as fastws); the rest is the
library's defaults.
"""

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    async with serve(
        echo, host, port, compression=None, max_size=None, ping_interval=None, backlog=2048
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
