"""/metrics, /healthz and /dashboard under the operator's control.

Each can be turned off (``metrics=False``, ``healthz=False``, ``dashboard=False``), and
``monitor_address="127.0.0.1:9100"`` serves the ones that are on there instead of on the
application's port: the usual metrics-port pattern, where the application's port is public
and the monitoring one is not. On the application's port they go through the application's
``process_request`` hook like every other request; on the monitoring port no application
hook runs and any other path gets 404.

With workers, each worker listens on the monitoring address with SO_REUSEPORT (the
kernel spreads the scrapes) and answers for the whole server from the shared scoreboard,
as on the main port; the master first checks that nobody else listens there (`probe`). The
monitoring port speaks plain HTTP, without TLS.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..protocol.http11 import Request, Response
from .hooks import Hooks
from .protocol import ServerProtocol
from .proxy import Proxies
from .routes import Routes, is_upgrade

if TYPE_CHECKING:
    from .server import Server

__all__ = ["MONITORING_PATHS", "listen", "parse_address", "probe", "split_routes"]

#: The paths the server itself answers besides the application.
MONITORING_PATHS = ("/metrics", "/healthz", "/dashboard")
_NOT_FOUND = Response(404, body=b"Not Found\n")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6) as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:9100)")
    return host.strip("[]"), int(port)


def probe(address: str) -> None:
    """Raise OSError (naming the option) if a socket already listens on `address`, with
    SO_REUSEPORT or not: the monitoring port must not be shared with another server. The
    master calls it before its workers bind the address with SO_REUSEPORT."""
    host, port = parse_address(address)
    if port == 0:
        return
    try:
        family, _, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, socket.SOCK_STREAM, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OSError(exc.errno, f"--monitor-address {address}: {why}") from None


def split_routes(config: Config, routes: Routes) -> tuple[Routes, Routes | None]:
    """(the application port's routes, the monitoring port's or None): switched-off
    endpoints are dropped; with a monitoring address the rest move there."""
    off = {"/metrics": not config.metrics, "/healthz": not config.healthz}
    for path, disabled in off.items():
        if disabled:
            routes.http.pop(path, None)
    if config.monitor_address is None:
        return routes, None
    monitor = Routes()
    for path in MONITORING_PATHS:
        if path in routes.http:
            monitor.add_http(path, routes.http.pop(path))
        if path in routes.websocket:
            monitor.add_websocket(path, routes.websocket.pop(path))
    return routes, monitor


class _MonitorServer:
    """The server as the monitoring port's connections see it: its own routes, no
    application hooks, 404 for any other path; everything else is the real server's."""

    def __init__(self, server: Server, routes: Routes) -> None:
        self._real = server
        self.routes = routes
        # No application hook; a path that is not a route gets 404.
        self.hooks = Hooks(request=self._only_routes, paths=frozenset())
        self.proxies = Proxies(())  # scraped directly, not through the application's proxy

    def _only_routes(self, ws: Any, request: Request) -> Response | None:
        if is_upgrade(request):
            return None if request.path in self.routes.websocket else _NOT_FOUND
        return None if request.path in self.routes.http else _NOT_FOUND

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def listen(server: Server, routes: Routes) -> asyncio.base_events.Server:
    """Start answering `routes` on the server's monitoring address."""
    config = server.config
    assert config.monitor_address is not None
    if server.scoreboard is None:  # this process alone: no master probed the address
        probe(config.monitor_address)
    host, port = parse_address(config.monitor_address)
    view: Any = _MonitorServer(server, routes)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ServerProtocol(view),
        host,
        port,
        backlog=config.backlog,
        reuse_address=True,
        reuse_port=True,  # every worker of the master listens; the kernel spreads the scrapes
    )
