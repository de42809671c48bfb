"""The application's say in the opening handshake, as `websockets` users know it.

- ``process_request(ws, request)``: called for every HTTP request on the port, an upgrade
  or not (/healthz, /metrics and the dashboard too, when they share the port). Returning a
  `Response` sends it instead of what would follow (a route's answer, the upgrade); None goes
  on. `ws` is the connection: `ws.remote_address`, and a place for what the hook learned
  (``ws.user = ...``) that the handler then finds on the same object.
  A hook written for the older form ``process_request(request)`` still works.
- ``process_response(ws, request, response)``: sees the 101 before it is sent; it may change
  ``response.headers`` in place (cookies, a server name) or return another `Response` (a
  status other than 101 refuses the upgrade).
- ``select_subprotocol(ws, offered)``: picks the subprotocol from the client's offer (a
  list, in the client's order), or None for none; instead of the fixed `subprotocols` list.
- Path routing: a handler given as a mapping ``{"/chat": chat, "/feed": Feed}`` serves
  each path with its handler, a coroutine handler or a `fastws.Listener` (mixed in one
  table); an upgrade to any other path gets 404.

Any of the three hooks may be a coroutine function. An exception in one is logged and the
client gets 500.

`HTTPGate` gives the plain HTTP requests of an ASGI application (parsed by its own front end,
fastws.asgi.http) the same request hook and access log as every other request on the port.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..handler import check
from ..protocol.handshake import Headers, Request, Response
from ..stats import counters
from . import access
from .protocol import ServerProtocol
from .routes import WebSocketRoute

if TYPE_CHECKING:
    from .server import Server

__all__ = ["HTTPGate", "Hooks", "split_paths"]

logger = logging.getLogger("fastws")

#: An ASGI application: app(scope, receive, send).
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

Hook = Callable[..., Any]


def _positional(app: Any) -> int | None:
    """How many required positional arguments `app` takes (None: `*args`, or unknown): it
    tells the two forms of process_request apart."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if positional and parameter.default is parameter.empty:
            count += 1
    return count


def _request_hook(hook: Hook | None) -> Hook | None:
    """`hook` called as hook(ws, request), whichever of the two forms it was written in."""
    if hook is None or _positional(hook) != 1:  # required positional parameters
        return hook

    def legacy(ws: Any, request: Any) -> Any:
        return hook(request)

    return legacy


async def _not_routed(ws: Any) -> None:  # pragma: no cover - unknown paths get 404 first
    raise RuntimeError("no handler for this path")


def split_paths(handler: Any) -> tuple[Any, dict[str, WebSocketRoute] | None]:
    """(the application handler, the routes of a path table): a mapping of paths to
    handlers (coroutine handlers and Listeners, mixed) is served by path, and its application
    handler never runs; anything else is the one handler. Raises HandlerError (one line)
    for a table entry that cannot serve."""
    if not isinstance(handler, Mapping):
        return handler, None
    check(handler)
    return _not_routed, {path: WebSocketRoute.for_handler(each) for path, each in handler.items()}


class Hooks:
    """The configured hooks in the form the connection calls them (see the module doc)."""

    __slots__ = ("paths", "request", "response", "subprotocol")

    def __init__(
        self,
        request: Hook | None = None,
        response: Hook | None = None,
        subprotocol: Hook | None = None,
        paths: frozenset[str] | None = None,
    ) -> None:
        self.request = _request_hook(request)
        self.response = response
        self.subprotocol = subprotocol
        #: The paths a handler table serves (None: one handler for every path).
        self.paths = paths

    @classmethod
    def from_config(cls, config: Config, paths: Mapping[str, Any] | None = None) -> Hooks:
        return cls(
            config.process_request,
            config.process_response,
            config.select_subprotocol,
            frozenset(paths) if paths is not None else None,
        )


class HTTPGate:
    """process_request and the access log for one HTTP connection of an ASGI application.

    The ASGI front end answers many requests per connection (keep-alive) and runs each as an
    ASGI call, so each request is wrapped (`wrap`): the hook sees it first, as
    ``process_request(ws, request)`` with `ws` a connection that is never opened (its
    `remote_address` the client, attributes set on it reach the application through
    ``fastws.asgi.connection(request)``), and a `Response` it returns is the answer (the
    connection stays alive). The access log has one line per request (a WebSocket upgrade's
    line is its connection's, as on any fastws server), its bytes in/out the socket's since
    the previous line. Made only when a hook or the access log is on (`for_server`).
    """

    __slots__ = ("_counts", "_hook", "_log", "_loop", "_server", "_since")

    def __init__(self, server: Server) -> None:
        self._server = server
        self._hook = server.hooks.request
        self._log = server.config.access_log
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()  # the connection's start, then each line's
        self._counts = (0, 0)  # the socket's byte counts at the previous line

    @classmethod
    def for_server(cls, server: Server) -> HTTPGate | None:
        """A gate for a new connection of `server`, or None when it has nothing to do."""
        if server.hooks.request is None and not server.config.access_log:
            return None
        return cls(server)

    def wrap(self, app: ASGIApp, transport: Any) -> ASGIApp:
        """`app` (the application, or a route such as /metrics) behind the hook and the log."""
        if self._hook is not None:
            app = self._hooked(app)
        if self._log:
            app = self._logged(app, transport)
        return app

    def refused(self, transport: Any, client: Any, status: int) -> None:
        """A request the front end refused itself (malformed, over a limit): its log line."""
        if self._log:
            self._write(transport, client, None, status, self._since)

    def _hooked(self, app: ASGIApp) -> ASGIApp:
        hook = self._hook
        assert hook is not None

        async def hooked(scope: dict[str, Any], receive: Any, send: Any) -> None:
            ws = ServerProtocol(self._server)
            ws.request = request = _request(scope)
            ws.remote_address = scope["client"]
            try:
                answer = hook(ws, request)
                if inspect.isawaitable(answer):
                    answer = await answer
            except Exception:
                logger.exception("process_request failed for %s", request.path)
                answer = _hook_failed()
            if answer is not None and not isinstance(answer, Response):
                logger.error(
                    "process_request returned %s for %s", type(answer).__name__, request.path
                )
                answer = _hook_failed()
            if answer is not None:
                await send_response(send, answer)
                return
            extensions = scope.setdefault("extensions", {})
            extensions["fastws"] = {"connection": ws}
            await app(scope, receive, send)

        return hooked

    def _logged(self, app: ASGIApp, transport: Any) -> ASGIApp:
        async def logged(scope: dict[str, Any], receive: Any, send: Any) -> None:
            status: int | None = None
            received: int | None = None  # bytes received before the response's last part

            async def send_seen(message: dict[str, Any]) -> None:
                nonlocal status, received
                kind = message["type"]
                if kind == "http.response.start":
                    status = message["status"]
                elif kind == "http.response.body" and not message.get("more_body", False):
                    # Counted before the last part leaves: once the client has the response
                    # it may send its next request, which the kernel counts on arrival,
                    # before this coroutine ends and the line is written.
                    counts = access.socket_bytes(transport)
                    received = counts[0] if counts is not None else None
                await send(message)

            started = self._loop.time()
            try:
                await app(scope, receive, send_seen)
            finally:
                # No response started: the front end answers 500 for the application.
                self._write(
                    transport, scope["client"], _request(scope), status or 500, started, received
                )

        return logged

    def _write(
        self,
        transport: Any,
        client: Any,
        request: Request | None,
        status: int,
        started: float,
        received: int | None = None,
    ) -> None:
        now = self._loop.time()
        counts = access.socket_bytes(transport)
        if counts is not None:
            # Written but still in the transport's buffer: this request's too.
            counts = (
                counts[0] if received is None else received,
                counts[1] + transport.get_write_buffer_size(),
            )
            previous, self._counts = self._counts, counts
            counts = (counts[0] - previous[0], counts[1] - previous[1])
        self._since = now
        access.log_line(client, request, status, None, None, now - started, counts)


def _request(scope: dict[str, Any]) -> Request:
    """The request an ASGI HTTP scope describes, as the hooks and the access log see it; its
    path is the one the application and the routes are chosen by (percent-decoded)."""
    headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
    query = scope["query_string"].decode("latin-1")
    target = scope["raw_path"].decode("latin-1") + ("?" + query if query else "")
    version = "HTTP/" + scope["http_version"]
    return Request(scope["method"], target, scope["path"], query, version, headers)


def _hook_failed() -> Response:
    counters.values[counters.ERRORS] += 1
    return Response(500, body=b"Internal Server Error\n")


async def send_response(send: Any, response: Response) -> None:
    """Send `response` as an ASGI HTTP response (with a Content-Length)."""
    fields = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    if not any(name == b"content-length" for name, _ in fields):
        fields.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": fields})
    await send({"type": "http.response.body", "body": response.body})
