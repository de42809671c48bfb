"""An ASGI 3 application as the server's `Application`."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
from typing import TYPE_CHECKING, Any

from ..assembler import BytesAssembler
from . import scope as scopes
from .lifespan import Lifespan
from .websocket import run

if TYPE_CHECKING:
    from ..server.server import Server
    from .http import HTTPConnection

__all__ = ["ASGIApplication"]


def _keep_malloc_memory(keep: int) -> None:
    """Messages received into `bytes` live in malloc's heap, not in regions: let glibc keep up
    to `keep` bytes (buffer_cache, what the RegionCache may keep mapped) free at the top of
    its heap instead of trimming it after ~2 messages' worth (M_TRIM_THRESHOLD: when to
    trim, M_TOP_PAD: what a trim leaves), and serve allocations up to
    32 MiB (its own dynamic maximum) from the heap. Without it, with several large messages
    in flight, the heap is trimmed and grown again all the time: a page fault per 4 KiB
    (d: 4 conns x 1 MiB, ~33 faults per message, -15 % per CPU)."""
    if keep <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, keep)  # M_TRIM_THRESHOLD
    # ... and keep them: past the threshold glibc trims the top of the heap down to
    # M_TOP_PAD (128 KiB by default), not to the threshold. Four 16 MiB messages in 131,000-
    # byte fragments grow the heap to ~100 MiB; without this all of it went back to the OS
    # after every round and was faulted in again, 4,088 faults and 9.5 ms per message
    # against 0 and 2.2 ms with it (bench/large_receive.py --asgi --conns 4 --size 16MiB).
    mallopt(-2, keep)  # M_TOP_PAD


class ASGIApplication:
    """Every connection starts as HTTP/1.1 (`fastws.asgi.http`); an upgrade becomes a
    `ServerProtocol` whose handshake the application answers (`defers_accept`).

    The shape of `fastws.server.app.Application` (not a subclass: the server imports this
    package, not the other way round)."""

    interface = "asgi"
    defers_accept = True
    listener = None

    def __init__(self, app: Any) -> None:
        # `run(self, ws)` itself, not a method awaiting it: each coroutine frame between
        # the connection's task and the application is resumed and suspended per message.
        self.handler = functools.partial(run, self)
        self.app = app
        self.lifespan = Lifespan(app)
        self._server_address: tuple[str, int] | None = None
        #: Open HTTP connections (WebSockets are the server's, in Server.connections).
        self.connections: set[HTTPConnection] = set()
        self._bytes_assembler: BytesAssembler | None = None

    def front(self, server: Server) -> asyncio.BaseProtocol:
        from .http import HTTPConnection

        return HTTPConnection(server, self)

    def server_address(self, server: Server) -> tuple[str, int] | None:
        """ASGI's `server`: the listening address (the same for every connection)."""
        address = self._server_address
        if address is None and server.sockets:
            address = self._server_address = scopes.address(server.sockets[0].getsockname())
        return address

    def bytes_assembler(self, server: Server) -> BytesAssembler:
        """The assembler of the WebSockets whose binary messages the application gets as
        `bytes`: the server's budget, one instance for all of them."""
        assembler = self._bytes_assembler
        if assembler is None or assembler.budget is not server.budget:
            assembler = self._bytes_assembler = BytesAssembler(server.budget)
            _keep_malloc_memory(server.config.buffer_cache)
        return assembler

    async def startup(self, server: Server) -> None:
        await self.lifespan.startup()

    async def shutdown(self, server: Server) -> None:
        """Close idle HTTP connections now and the others once their responses are out (up
        to close_timeout), then the application's lifespan shutdown."""
        loop = asyncio.get_running_loop()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = loop.time() + server.config.close_timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        await self.lifespan.shutdown()
