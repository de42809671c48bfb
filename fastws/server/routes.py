"""Where a request on the server's port goes: a registered route, or the application.

A request that is not a WebSocket upgrade goes to a registered HTTP route (`/healthz`,
`/metrics`, the dashboard's page) and is answered with one `Response`; otherwise it is the
application's (a plain GET to a fastws handler gets 400, an ASGI app gets every request).
An upgrade to a registered WebSocket route runs that route's handler with that route's
handshake checks; any other upgrade runs the application's handler.

The server owns one `Routes` (`Server.routes`), built from its Config by `default_routes`.
The connection code (`server.protocol`) asks it once per request and knows no path itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..listener import Listener, as_listener
from ..protocol.handshake import Request, Response

if TYPE_CHECKING:
    from .protocol import ServerProtocol
    from .server import Server

__all__ = ["HTTPRoute", "Routes", "WebSocketRoute", "default_routes"]

#: Answers a plain HTTP request (no Upgrade) at its path; counted in http_requests.
HTTPRoute = Callable[["Server", Request], Response]


@dataclass(frozen=True, slots=True)
class WebSocketRoute:
    """A WebSocket endpoint the server itself serves at a path, beside the application.

    `handler(ws)` runs each connection, unless `listener` (a callback-style handler, see
    fastws.listener) gets its events instead (`for_handler` tells which a handler is).
    `check(request, server)` raises `HandshakeError` to refuse the upgrade; it replaces the
    configured Origin allow-list for this path. `app_hooks`: the application's
    process_request hook and max_connections apply. `counted`: the connection shows in the
    counters (connections, handshakes, closes); an uncounted route's handler accounts for
    its own traffic. `keepalive`: the configured pings and message_timeout apply.
    """

    handler: Callable[[ServerProtocol], Awaitable[None]]
    check: Callable[[Request, Server], None] | None = None
    subprotocols: bool = True
    compression: bool = True
    app_hooks: bool = True
    counted: bool = True
    keepalive: bool = True
    listener: Listener | None = None

    @classmethod
    def for_handler(cls, handler: Any) -> WebSocketRoute:
        """The route of an application's handler: a coroutine handler, or a Listener (an
        instance, or a class instantiated here, once)."""
        listener = as_listener(handler)
        if listener is None:
            return cls(handler)
        return cls(_runs_listener, listener=listener)


async def _runs_listener(ws: ServerProtocol) -> None:  # pragma: no cover - never called
    raise RuntimeError("a listener's route has no coroutine handler")


class Routes:
    """Registered HTTP and WebSocket routes, by exact path."""

    __slots__ = ("http", "websocket")

    def __init__(self) -> None:
        self.http: dict[str, HTTPRoute] = {}
        self.websocket: dict[str, WebSocketRoute] = {}

    def add_http(self, path: str, route: HTTPRoute) -> None:
        """Answer plain HTTP requests for `path` with `route(server, request)`."""
        self.http[path] = route

    def add_websocket(self, path: str, route: WebSocketRoute) -> None:
        """Run `route.handler` for upgrades to `path` instead of the application's."""
        self.websocket[path] = route

    def http_route(self, request: Request) -> HTTPRoute | None:
        """The route answering this plain (non-upgrade) request, if any."""
        return self.http.get(request.path)

    def websocket_route(self, request: Request) -> WebSocketRoute | None:
        """The route serving this upgrade, or None for the application's handler."""
        return self.websocket.get(request.path)


def is_upgrade(request: Request) -> bool:
    """The client asks to switch protocols (the handshake checks the rest)."""
    return "Upgrade" in request.headers


def health(server: Server, request: Request) -> Response:
    """GET /healthz: the whole server's state as JSON."""
    from ..stats import metrics

    snap = metrics.snapshot(_fresh_board(server))
    return Response(
        200, headers=[("Content-Type", "application/json")], body=_utf8(metrics.healthz(snap))
    )


def prometheus(server: Server, request: Request) -> Response:
    """GET /metrics: every counter of every worker, Prometheus text format."""
    from ..stats import metrics

    snap = metrics.snapshot(_fresh_board(server))
    headers = [("Content-Type", metrics.CONTENT_TYPE)]
    return Response(200, headers=headers, body=_utf8(metrics.prometheus(snap)))


def _fresh_board(server: Server) -> Any:
    """The scoreboard with this worker's own row up to date (None: a single process)."""
    board = server.scoreboard
    server.sample_gauges()
    if board is not None:
        board.beat(server.scoreboard_slot)
    return board


def _utf8(text: str) -> bytes:
    return text.encode()


def default_routes(dashboard: bool) -> Routes:
    """/healthz and /metrics always; /dashboard (page and feed) when it is enabled."""
    routes = Routes()
    routes.add_http("/healthz", health)
    routes.add_http("/metrics", prometheus)
    if dashboard:
        from . import dashboard as board  # only a server with --dashboard loads it

        routes.add_http(board.PATH, board.page_route)
        # A viewer is not part of what it shows: not counted, and it never needs a ping (a
        # dead viewer stops reading its snapshots, and write_timeout ends it). No
        # subprotocol, no compression: the snapshots are small and sent once a second.
        feed = WebSocketRoute(
            board.feed,
            check=board.check_same_origin,
            subprotocols=False,
            compression=False,
            app_hooks=False,
            counted=False,
            keepalive=False,
        )
        routes.add_websocket(board.PATH, feed)
    return routes
