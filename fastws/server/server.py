"""Listening for connections, tracking them, and stopping gracefully.

`serve()` is the asyncio entry point (an async context manager, like `websockets.serve`);
`run_single()` is the blocking one for a server in this process alone (`fastws.launch` calls
it): it picks the event loop (uvloop unless told otherwise), installs signal handlers and
turns SIGINT/SIGTERM into a graceful stop in which every client receives Close 1001 and gets
`close_timeout` to answer (of the server's attention: see `Server.shutdown`), all within
`graceful_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..assembler import RegionAssembler
from ..broadcast import broadcast
from ..buffers import Budget, RegionCache
from ..config import Config
from ..handler import check as check_handler
from ..listener import Listener
from ..protocol.frames import CloseCode
from ..pubsub.factory import make_broker
from ..pubsub.hub import Hub
from ..websocket import WebSocket
from . import monitor
from .app import adapt
from .gauges import GaugeSampler
from .hooks import Hooks, split_paths
from .protocol import ServerProtocol
from .proxy import Proxies
from .routes import Routes, default_routes

if TYPE_CHECKING:
    from ..pubsub.ring import Ring
    from ..stats.scoreboard import Scoreboard

__all__ = ["Handler", "Server", "run_single", "serve"]

logger = logging.getLogger("fastws")

#: What serves a path: a coroutine handler, `async def handler(ws)`; or a callback-style
#: `Listener` (an instance, or a class instantiated once).
PathHandler = Callable[[Any], Awaitable[None]] | Listener | type[Listener]
#: What a server serves: one handler, a table of paths to handlers (``{"/chat": chat}``), or
#: an ASGI 3 application, `async def app(scope, receive, send)`.
Handler = PathHandler | Mapping[str, PathHandler] | Callable[[Any, Any, Any], Awaitable[None]]


#: How often unused large-message buffers are looked for and unmapped (see RegionCache).
TRIM_INTERVAL = 2.0
#: How often a stopping server looks at its closing connections.
STOP_POLL = 0.02
#: A look that comes this much later than asked means the loop is behind (a worker with
#: thousands of connections closing at once, or starved of CPU): the peers' answers may be
#: waiting unread, so that time is not counted against them.
STOP_LAG = 0.25


class Server:
    """A listening WebSocket server running `handler(ws)` for each connection."""

    #: Set by a worker process: the shared page /metrics reads (None: this process alone).
    scoreboard: Scoreboard | None = None
    scoreboard_slot: int = 0
    #: Set by a worker process: the host's channels ring (None: channels stay in-process).
    ring: Ring | None = None

    def __init__(
        self,
        handler: Handler,
        config: Config,
        sock: socket.socket | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        #: The application whatever its interface (see server.app): `handler` runs its
        #: WebSocket connections, or `listener` (a callback-style handler) gets their events.
        handler, paths = split_paths(handler)  # {"/chat": chat, ...}: served by path
        self.application = adapt(handler, config.interface)
        self.handler = self.application.handler
        self.listener = self.application.listener
        self._front = self.application.front
        if self.application.interface == "fastws":
            check_handler(handler)  # one clear TypeError now rather than 1011 on every connection
        self.config = config
        if ssl is not None and config.certfile is not None:
            raise ValueError("pass either ssl= or certfile/keyfile, not both")
        # TLS: an SSLContext given in Python, else one built from certfile/keyfile (or None).
        self.ssl = ssl if ssl is not None else config.ssl_context()
        if self.ssl is not None and config.proxy_protocol != "off":
            raise ValueError("proxy_protocol cannot be used with TLS: terminate TLS at the proxy")
        #: Trusted proxies and the PROXY protocol mode (see server.proxy).
        self.proxies = Proxies(config.forwarded_allow_ips, config.proxy_protocol)
        self._sock = sock
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[ServerProtocol] = set()
        self._stopping = False
        # One budget for every connection of this process (see buffers.Budget), and the
        # large-message buffers it keeps for reuse (see buffers.RegionCache).
        cache = RegionCache(config.buffer_cache) if config.buffer_cache else None
        self.budget = Budget(config.max_message_memory, cache)
        #: How its connections assemble received messages in that memory (see assembler).
        self.assembler = RegionAssembler(self.budget)
        self._trim_timer: asyncio.TimerHandle | None = None
        # The budgets as gauges for /metrics, sampled with each heartbeat (server.gauges).
        self.sample_gauges = GaugeSampler(self)
        #: Channels (rooms) of this server in this process; made by start().
        self.hub: Hub | None = None
        #: What a request goes to besides the application (see server.routes).
        self.routes: Routes = default_routes(config.dashboard)
        for path, route in (paths or {}).items():
            self.routes.add_websocket(path, route)
        #: The application's handshake hooks and path table (see server.hooks).
        self.hooks = Hooks.from_config(config, paths)
        # /metrics, /healthz, /dashboard: off, here, or on the monitoring port (server.monitor).
        self.routes, self._monitor_routes = monitor.split_routes(config, self.routes)
        self._monitor: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        broker = make_broker(config.broker, ring=self.ring, slot=self.scoreboard_slot)
        hub = Hub(broker, limit=config.broadcast_limit, overflow=config.broadcast_overflow)
        await hub.start()
        self.hub = hub
        await self.application.startup(self)  # ASGI lifespan: before the first connection
        # The TLS handshake comes before connection_made(), so it needs its own bound.
        tls: dict[str, Any] = {}
        if self.ssl is not None:
            tls = {"ssl": self.ssl, "ssl_handshake_timeout": config.handshake_timeout}
        if self._sock is not None:
            self._server = await loop.create_server(
                self._new_protocol, sock=self._sock, backlog=config.backlog, **tls
            )
        else:
            self._server = await loop.create_server(
                self._new_protocol,
                config.host,
                config.port,
                backlog=config.backlog,
                reuse_address=True,
                **tls,
            )
        if self._monitor_routes is not None:
            self._monitor = await monitor.listen(self, self._monitor_routes)
        if self.budget.cache is not None:
            self._trim_timer = loop.call_later(TRIM_INTERVAL, self._trim_cache)
        scheme = "ws" if self.ssl is None else "wss"
        for sock in self._server.sockets:
            logger.info("listening on %s://%s", scheme, _format_address(sock.getsockname()))
        if self._monitor is not None and self._monitor_routes is not None:
            for sock in self._monitor.sockets:
                where = _format_address(sock.getsockname())
                logger.info(
                    "monitoring on http://%s (%s)", where, ", ".join(self._monitor_routes.http)
                )

    def _trim_cache(self) -> None:
        assert self.budget.cache is not None
        self.budget.cache.trim()
        self._trim_timer = asyncio.get_running_loop().call_later(TRIM_INTERVAL, self._trim_cache)

    def _new_protocol(self) -> asyncio.BaseProtocol:
        return self._front(self)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    @property
    def connections(self) -> frozenset[ServerProtocol]:
        return frozenset(self._connections)

    def add_connection(self, ws: ServerProtocol) -> None:
        """A connection of this server was made (its handshake may still be in progress)."""
        self._connections.add(ws)

    def discard_connection(self, ws: ServerProtocol) -> None:
        """A connection of this server is gone."""
        self._connections.discard(ws)

    def each_connection(self) -> Iterator[ServerProtocol]:
        """The open connections without a copy (none may open or close while iterating)."""
        return iter(self._connections)

    # -- fan-out -------------------------------------------------------------------------------

    def broadcast(self, connections: Iterable[WebSocket], message: Any) -> int:
        """Send `message` to every open connection of `connections`, framed once; return to
        how many it went. Slow connections get this server's broadcast_overflow policy."""
        config = self.config
        return broadcast(
            connections,
            message,
            limit=config.broadcast_limit,
            overflow=config.broadcast_overflow,
        )

    async def publish(self, channel: str, message: Any) -> None:
        """Send `message` to every subscriber of `channel` in every worker (and, with a Redis
        broker, every host); raises PublishError if the broker could not take it."""
        await self.require_hub().publish(channel, message)

    def require_hub(self) -> Hub:
        """The channels' hub; RuntimeError before start()."""
        if self.hub is None:
            raise RuntimeError("the server is not started")
        return self.hub

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() the server first"
        with contextlib.suppress(asyncio.CancelledError):
            await self._server.serve_forever()

    async def shutdown(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "", timeout: float | None = None
    ) -> int:
        """Stop accepting, send every connection Close `code`, wait for the closing handshakes,
        then drop whoever is left; return how many that was.

        The peers get close_timeout of this server's attention to answer: time in which its
        loop kept up, not time it spent behind a backlog with their answers unread (a worker
        closing 16,000 connections at once on a busy machine took ~20 s to read them all,
        and a timer per connection reset every one it had not reached at 10 s). `timeout`
        (default close_timeout + 1; a worker passes its graceful_timeout) bounds the whole.
        """
        if self._stopping:
            return 0
        self._stopping = True
        loop = asyncio.get_running_loop()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        if self._server is not None:
            self._server.close()
        if self._monitor is not None:
            self._monitor.close()
        # A connection accepted in the same loop iteration gets its connection_made() only
        # now; it must be told too, not aborted at the end (a reload would fail it).
        await asyncio.sleep(0)
        if self._connections:
            logger.info("closing %d connections", len(self._connections))
        close_timeout = self.config.close_timeout
        start = loop.time()
        deadline = start + (close_timeout + 1 if timeout is None else timeout)
        told: set[ServerProtocol] = set()
        told_at = steady_from = start
        silent = False
        while self._connections and loop.time() < deadline:
            new = self._connections - told
            if new:
                for ws in new:
                    ws.shutdown(code, reason)  # no timer of its own: this loop judges
                told |= new
                told_at = loop.time()
            asked = loop.time() + STOP_POLL
            await asyncio.sleep(STOP_POLL)
            now = loop.time()
            if now - asked > STOP_LAG:
                steady_from = now
            if now - max(told_at, steady_from) >= close_timeout:
                silent = True  # whoever is left had close_timeout of our attention
                break
        dropped = self.abort()
        if dropped and silent:
            logger.info(
                "stop: %d connections did not answer Close within close_timeout (%gs): dropped",
                dropped,
                close_timeout,
            )
        elif dropped:
            logger.warning(
                "stop: %d connections still closing after %.1fs (the stop's limit: for a"
                " worker, graceful_timeout): dropped",
                dropped,
                loop.time() - start,
            )
        if self._server is not None:
            await self._server.wait_closed()
        await self.application.shutdown(self)
        if self.hub is not None:
            await self.hub.close()
        return dropped

    def abort(self) -> int:
        """Drop every connection still open, without a closing handshake (what is left when
        the grace period runs out); return how many there were."""
        left = [ws for ws in self._connections if not ws.closed]
        for ws in left:
            ws.abort()
        return len(left)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


def _format_address(address: Any) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def serve(
    handler: Handler,
    config: Config | None = None,
    *,
    ssl: _ssl.SSLContext | None = None,
    **options: Any,
) -> Server:
    """`async with serve(handler, port=8765) as server: await server.serve_forever()`.

    `ssl` (an `ssl.SSLContext` for the server side) serves wss://, like certfile/keyfile.
    """
    if config is None:
        config = Config(**options)
    elif options:
        raise TypeError("pass either a Config or options, not both")
    return Server(handler, config, ssl=ssl)


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop unless `kind` is "asyncio" (or uvloop is missing and `kind` is "auto")."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_single(
    handler: Handler,
    config: Config,
    *,
    ssl: _ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve in this process alone until SIGINT or SIGTERM, then stop gracefully (Close 1001
    to every client). `fastws.run()` and `fastws serve --workers 0` come here through
    `fastws.launch`, which decides between this and a master with workers, and passes the
    listening socket it made the way the master makes them (--host/--port, --uds, --fd)."""
    loop = new_event_loop(config.loop)
    try:
        loop.run_until_complete(_serve_until_signal(handler, config, ssl, sock))
    finally:
        loop.close()


async def _serve_until_signal(
    handler: Handler,
    config: Config,
    ssl: _ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    server = Server(handler, config, sock, ssl=ssl)
    await server.start()
    received = await stop
    logger.info("received %s, shutting down", signal.Signals(received).name)
    await server.shutdown(CloseCode.GOING_AWAY, "server shutting down", config.graceful_timeout)
