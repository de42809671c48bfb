"""Echo server on Tornado's WebSocketHandler, run on uvloop.

    python bench/servers/tornado_echo.py PORT [--compression]

Settings: compression off, or with --compression (scenario g) its permessage-deflate with
default options (zlib's default level, window 15; context takeover unless the client asks
for none); no pings, messages up to 64 MiB, backlog 2048.
"""

import argparse
import asyncio

import uvloop
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler


class Echo(WebSocketHandler):
    compress = False

    def get_compression_options(self) -> dict[str, object] | None:
        return {} if self.compress else None  # {}: permessage-deflate with its defaults

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


async def main(host: str, port: int) -> None:
    app = Application([("/", Echo)], websocket_max_message_size=64 << 20)
    server = HTTPServer(app)
    server.add_sockets(bind_sockets(port, host, backlog=2048))
    print("listening", flush=True)
    await asyncio.get_running_loop().create_future()  # until SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate")
    args = parser.parse_args()
    Echo.compress = args.compression
    uvloop.run(main(args.host, args.port))
