"""Echo server on picows (Cython), on uvloop: frames are echoed from its receive buffer.

    python bench/servers/picows_echo.py PORT [--processes N]

picows hands the listener frames, not messages, so each frame goes back as it came (opcode,
FIN); the load generator sends unfragmented messages. Settings: no auto-ping, frames up to
64 MiB, backlog 2048. --processes N: N processes, each its own server on its own
SO_REUSEPORT socket (multiproc.py).
"""

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


async def main(host: str, port: int, sock: socket.socket | None = None) -> None:
    if sock is None:
        server = await ws_create_server(
            lambda _request: Echo(), host, port, max_frame_size=64 << 20, backlog=2048
        )
        print("listening", flush=True)
    else:  # one of --processes N: the socket is bound and listening already
        server = await ws_create_server(lambda _request: Echo(), sock=sock, max_frame_size=64 << 20)
    async with server:
        await asyncio.get_running_loop().create_future()  # until SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.processes > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from multiproc import serve

        serve(args.host, args.port, args.processes, lambda s: uvloop.run(main("", 0, s)))
    else:
        uvloop.run(main(args.host, args.port))
