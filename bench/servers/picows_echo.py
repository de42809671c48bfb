"""Echo server on picows (Cython), on uvloop: frames are echoed from its receive buffer.

    python bench/servers/picows_echo.py PORT [--processes N] [--assemble]

picows hands the listener frames, not messages, so each frame goes back as it came (opcode,
FIN): a fragmented message's echo starts before its last fragment has arrived. --assemble
echoes whole messages instead (fragments gathered in a bytearray, then sent as one frame),
what an application that needs the message does, and what a message API (fastws, aiohttp,
websockets) does for it. Settings: no auto-ping, frames up to
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


class MessageEcho(WSListener):
    """Echo whole messages: fragments are gathered until FIN (one frame: no copy)."""

    def __init__(self) -> None:
        self.parts: bytearray | None = None
        self.opcode = WSMsgType.BINARY

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY) and frame.fin:
            transport.send(kind, frame.get_payload_as_memoryview())
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.opcode = kind
            self.parts = bytearray(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.CONTINUATION and self.parts is not None:
            self.parts += frame.get_payload_as_memoryview()
            if frame.fin:
                transport.send(self.opcode, self.parts)
                self.parts = None


async def main(
    host: str, port: int, sock: socket.socket | None = None, assemble: bool = False
) -> None:
    listener = MessageEcho if assemble else Echo
    if sock is None:
        server = await ws_create_server(
            lambda _request: listener(), host, port, max_frame_size=64 << 20, backlog=2048
        )
        print("listening", flush=True)
    else:  # one of --processes N: the socket is bound and listening already
        server = await ws_create_server(
            lambda _request: listener(), sock=sock, max_frame_size=64 << 20
        )
    async with server:
        await asyncio.get_running_loop().create_future()  # until SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--assemble", action="store_true", help="echo whole messages")
    args = parser.parse_args()
    if args.processes > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from multiproc import serve

        serve(
            args.host,
            args.port,
            args.processes,
            lambda s: uvloop.run(main("", 0, s, args.assemble)),
        )
    else:
        uvloop.run(main(args.host, args.port, assemble=args.assemble))
