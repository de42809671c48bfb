"""A raw TCP echo in Python on uvloop, two ways: the floor of any Python server on uvloop.

    python bench/servers/uvloop_echo.py PORT [--host HOST] [--reader] [--processes N]

No WebSocket at all (the generator's frames come back as they were sent, as from the C echo
`raw-tcp`): what one read and one write per message cost a Python program on uvloop before
it does anything of its own. A WebSocket server written in Python cannot do less per message.

- default (`uvloop-protocol`): an `asyncio.BufferedProtocol` on uvloop's own TCP transport
  (libuv reads with read(2) into the buffer `get_buffer` gives, `buffer_updated` writes the
  bytes back with `transport.write`: write(2) at once) — fastws' way.
- `--reader` (`uvloop-reader`): a transport of one's own on uvloop's loop, as picows'
  aiofastnet does in Cython — here in Python: `loop.add_reader(fd)`, `sock.recv_into`,
  `sock.send` (recv(2)/send(2), which skip the VFS layer read(2)/write(2) go through).
  Measured against the first, it says whether such a transport pays when written in Python.

--processes N: N processes, each its own server on its own SO_REUSEPORT socket
(multiproc.py, as picows and aiohttp run with `bench run --workers N`): the floor of the
multi-process runs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import uvloop

BUFFER = 256 << 10


class Echo(asyncio.BufferedProtocol):
    """uvloop's transport reads into our buffer; each read goes back as one write."""

    def __init__(self) -> None:
        self.buffer = bytearray(BUFFER)
        self.view = memoryview(self.buffer)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.transport.write(self.buffer[:nbytes])


class ReaderEcho:
    """A minimal transport of our own: readable -> recv_into -> send; what send() could not
    take waits for writable (the generator reads everything back, so rarely)."""

    __slots__ = ("buffer", "fd", "loop", "pending", "sock", "view")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.buffer = bytearray(BUFFER)
        self.view = memoryview(self.buffer)
        self.pending: bytearray | None = None
        loop.add_reader(self.fd, self.readable)

    def readable(self) -> None:
        try:
            nbytes = self.sock.recv_into(self.view)
        except BlockingIOError:
            return
        except OSError:
            nbytes = 0
        if not nbytes:
            self.close()
            return
        data = self.buffer[:nbytes]
        if self.pending is not None:
            self.pending += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < nbytes:
            self.pending = bytearray(data[sent:])
            self.loop.add_writer(self.fd, self.writable)

    def writable(self) -> None:
        assert self.pending is not None
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.pending[:sent]
        if not self.pending:
            self.pending = None
            self.loop.remove_writer(self.fd)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        if self.pending is not None:
            self.loop.remove_writer(self.fd)
        self.sock.close()


async def main(host: str, port: int, reader: bool, sock: socket.socket | None = None) -> None:
    loop = asyncio.get_running_loop()
    if sock is None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
        listener.setblocking(False)
    else:  # one of --processes N: bound and listening already
        listener = sock
    if not reader:
        server = await loop.create_server(Echo, sock=listener)
    else:

        def accept() -> None:
            while True:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    return
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ReaderEcho(loop, sock)

        loop.add_reader(listener.fileno(), accept)
    if sock is None:
        print("listening", flush=True)
    await loop.create_future()  # until SIGTERM
    if not reader:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--reader", action="store_true", help="add_reader + recv_into/send")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.processes > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from multiproc import serve

        serve(
            args.host,
            args.port,
            args.processes,
            lambda s: uvloop.run(main("", 0, args.reader, s)),
        )
    else:
        uvloop.run(main(args.host, args.port, args.reader))
