"""Echo server on the `websockets` library (its asyncio implementation).

    python bench/servers/websockets_echo.py PORT [--uvloop] [--compression]

Settings: compression off, or with --compression (scenario g) its default permessage-deflate
(window 12, memLevel 5, zlib's default level; context takeover unless the client asks for
none), no keepalive pings, no message size limit, backlog 2048 (as fastws); the rest is the
library's defaults.
"""

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int, compression: bool) -> None:
    async with serve(
        echo,
        host,
        port,
        compression="deflate" if compression else None,
        max_size=None,
        ping_interval=None,
        backlog=2048,
    ):
        print("listening", flush=True)
        await asyncio.get_running_loop().create_future()  # until SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port, args.compression))
    else:
        asyncio.run(main(args.host, args.port, args.compression))
