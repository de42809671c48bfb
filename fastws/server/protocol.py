"""The server side of one connection: the opening handshake, then the application's handler.

The handshake is parsed by the sans-I/O `protocol.handshake` module; this class only moves
bytes, enforces the handshake timeout, runs the `process_request` hook and starts the handler.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..protocol.deflate import DeflateOptions, PerMessageDeflate, negotiate
from ..protocol.frames import CloseCode
from ..protocol.handshake import (
    HandshakeError,
    Request,
    RequestParser,
    Response,
    accept_response,
    check_origin,
    check_upgrade,
    error_response,
    negotiate_subprotocol,
    parse_extensions,
    parse_header_list,
)
from ..protocol.proxy import ProxyHeaderError, ProxyHeaderParser
from ..stats import counters
from ..websocket import ConnectionClosed, WebSocket
from . import access
from .proxy import drop
from .routes import HTTPRoute, WebSocketRoute, is_upgrade

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ServerConnection", "ServerProtocol"]

logger = logging.getLogger("fastws")

#: A worker at max_connections: try again soon, probably on another worker.
_BUSY = Response(503, headers=[("Retry-After", "1")], body=b"Service Unavailable\n")
#: An upgrade to a path the handler table does not have.
_NOT_FOUND = Response(404, body=b"Not Found\n")


class ServerProtocol(WebSocket):
    """A connection accepted by a `Server`; the handler sees it as a `WebSocket`."""

    __slots__ = (
        "_close_on_open",
        "_handler_task",
        "_handshake_timer",
        "_parser",
        "_pending",
        "_proxy",
        "_route",
        "_server",
        "_started",
        "_status",
    )
    #: Set when the server stops during this connection's handshake: close once it is open.
    _close_on_open: tuple[int, str] | None
    #: The request (the upgrade, or a plain HTTP request to the hooks): set before any hook
    #: or handler sees the connection, so typed without None for them.
    request: Request

    def __init__(self, server: Server) -> None:
        config = server.config
        super().__init__(
            max_message_size=config.max_message_size,
            max_frame_size=config.effective_max_frame_size,
            max_fragments=config.max_fragments,
            max_queue=config.max_queue,
            write_limit=config.write_limit,
            close_timeout=config.close_timeout,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            client=False,
            write_timeout=config.write_timeout,
            assembler=server.assembler,
            message_timeout=config.message_timeout,
            failure_grace=config.failure_grace,
        )
        self._server = server
        self._route: WebSocketRoute | None = None  # None: the application's handler
        # (Sec-WebSocket-Key, leftover bytes) while the application decides (defers_accept).
        self._pending: tuple[str, bytes] | None = None
        self._close_on_open = None
        self._parser: RequestParser | None = RequestParser(
            max_request_line=config.max_request_line,
            max_headers=config.max_headers,
            max_header_size=config.max_header_size,
        )
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._handler_task: asyncio.Task[None] | None = None
        # The PROXY protocol header expected before the request (None: none, or read).
        self._proxy: ProxyHeaderParser | None = server.proxies.reader()
        # For the access log: when the connection began (0: access log off), HTTP status sent.
        self._started = 0.0
        self._status: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._server.config.access_log:
            self._started = self._loop.time()
        self._server.add_connection(self)
        self._handshake_timer = self._loop.call_later(
            self._server.config.handshake_timeout, self._handshake_expired
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._pending = None  # nothing left to accept or deny
        if self._started:  # before the transport goes: its socket has the byte counts
            access.log_connection(
                self._transport,
                self.remote_address,
                self.request,
                101 if self._open else self._status,
                self.subprotocol,
                self.close_code or (CloseCode.ABNORMAL if self._open else None),
                self._loop.time() - self._started,
            )
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        super().connection_lost(exc)
        self._server.discard_connection(self)
        hub = self._server.hub
        if hub is not None:
            hub.drop(self)
        if self._open and (self._route is None or self._route.counted):
            counters.values[counters.CONNECTIONS_OPEN] -= 1
            counters.values[counters.close_index(self.close_code or CloseCode.ABNORMAL)] += 1

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self._open and self._transport is not None:
            logger.info("handshake from %s timed out", self._peer())
            self._transport.abort()

    def _handshake_data(self, data: memoryview) -> None:
        if self._proxy is not None:
            rest = self._proxy_header(self._proxy, data)
            if rest is None:
                return
            data = rest
        parser = self._parser
        if parser is None:  # waiting for process_request; a client must not send more yet
            return
        try:
            request = parser.feed(data)
        except HandshakeError as exc:
            self._reject(error_response(exc), f"{exc.status} {exc.reason}")
            return
        if request is None:
            return
        self._parser = None
        self.handle_request(request, parser.leftover)

    @classmethod
    def upgrade(
        cls,
        server: Server,
        transport: asyncio.BaseTransport,
        request: Request,
        leftover: bytes,
        remote_address: Any = None,
    ) -> ServerProtocol:
        """Go on with an upgrade request another front end parsed (an HTTP/1.1 connection):
        the transport is this connection's from now on. `remote_address`: the client a
        PROXY header named, which that front end read (None: the peer's)."""
        conn = cls(server)
        conn._parser = None
        conn._proxy = None  # read by the front end, if any
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if remote_address is not None:
            conn.remote_address = remote_address
        conn.handle_request(request, leftover)
        return conn

    def handle_request(self, request: Request, leftover: bytes) -> None:
        """Route a parsed request: a registered HTTP route, a registered WebSocket route, or
        the application's handler (`leftover`: bytes the client sent after the request)."""
        self.request = request
        proxies = self._server.proxies
        if proxies.active:  # Forwarded / X-Forwarded-For from a trusted proxy
            client = proxies.client(self.remote_address, request.headers)
            if client is not None:
                self.remote_address = client
        hook = self._server.hooks.request
        if hook is None:
            self._route_request(request, leftover)
        else:
            self._call_hook(
                "process_request",
                hook,
                (self, request),
                lambda answer: self._request_answered(request, leftover, answer),
            )

    def _request_answered(self, request: Request, leftover: bytes, answer: Any) -> None:
        """process_request's answer: a Response is sent instead; None goes on."""
        if answer is None:
            self._route_request(request, leftover)
        elif not isinstance(answer, Response):
            self._hook_failed("process_request", f"returned {type(answer).__name__}")
        elif is_upgrade(request):
            self._reject(answer, f"{answer.status} from process_request")
        else:
            counters.values[counters.HTTP_REQUESTS] += 1
            self._respond(answer)

    def _route_request(self, request: Request, leftover: bytes) -> None:
        """A registered HTTP route, a registered WebSocket route, or the application's."""
        routes = self._server.routes
        if not is_upgrade(request):
            http = routes.http_route(request)
            if http is not None:
                self._answer_route(http, request)
                return
        route = routes.websocket_route(request)
        self._route = route
        try:
            key = check_upgrade(request)
            if route is None or route.check is None:
                check_origin(request, self._server.config.origins)
            else:
                route.check(request, self._server)
        except HandshakeError as exc:
            where = "" if route is None else f" ({request.path.strip('/')})"
            self._reject(error_response(exc), f"{exc.status} {exc.reason}{where}")
            return
        if route is None and self._server.hooks.paths is not None:
            self._reject(_NOT_FOUND, f"404 no handler for {request.path}")
            return
        if route is not None and not route.app_hooks:
            self._accept(request, key, leftover)
            return
        limit = self._server.config.max_connections
        if limit is not None and counters.values[counters.CONNECTIONS_OPEN] >= limit:
            counters.values[counters.BUSY] += 1
            self._reject(_BUSY, f"503 max_connections ({limit}) reached")
            return
        self._accept(request, key, leftover)

    # -- the application's hooks (see server.hooks) -------------------------------------------

    def _call_hook(
        self,
        name: str,
        hook: Callable[..., Any],
        args: tuple[Any, ...],
        then: Callable[[Any], None],
    ) -> None:
        """Call a hook; `then(its answer)` at once, or once an async hook has answered (reading
        pauses meanwhile: the client must wait for the handshake's answer anyway)."""
        try:
            answer = hook(*args)
        except Exception:
            self._hook_failed(name)
            return
        if inspect.isawaitable(answer):
            self._transport.pause_reading()  # type: ignore[union-attr]
            self._handler_task = self._loop.create_task(self._await_hook(name, answer, then))
        else:
            then(answer)

    async def _await_hook(self, name: str, answer: Any, then: Callable[[Any], None]) -> None:
        try:
            result = await answer
        except Exception:
            self._hook_failed(name)
            return
        if self._transport is None:
            return
        self._transport.resume_reading()
        then(result)

    def _hook_failed(self, name: str, why: str = "") -> None:
        """A hook raised (or answered nonsense): its bug, logged; the client gets 500."""
        counters.values[counters.ERRORS] += 1
        if why:
            logger.error("%s %s for %s", name, why, self.request_path)
        else:
            logger.exception("%s failed for %s", name, self.request_path)
        self._reject(Response(500, body=b"Internal Server Error\n"), f"500 {name}")

    def _answer_route(self, route: HTTPRoute, request: Request) -> None:
        """A plain HTTP request for a registered route: its response, then close."""
        counters.values[counters.HTTP_REQUESTS] += 1  # before the route: /metrics counts itself
        try:
            response = route(self._server, request)
        except Exception:
            counters.values[counters.ERRORS] += 1
            logger.exception("route %s failed", request.path)
            response = Response(500, body=b"Internal Server Error\n")
        self._respond(response)

    def _proxy_header(self, reader: ProxyHeaderParser, data: memoryview) -> memoryview | None:
        """Read the PROXY protocol header; what follows it, once complete, else None."""
        try:
            rest, client = self._server.proxies.take_header(reader, data, self.remote_address)
        except ProxyHeaderError as exc:
            self._parser = None
            self._cancel_handshake_timer()
            drop(self._transport, self._peer(), exc)
            return None
        if rest is None:
            return None
        self._proxy = None
        if client is not None:
            self.remote_address = client
        return memoryview(rest) if rest else None

    def _respond(self, response: Response) -> None:
        """Answer a plain HTTP request (a registered route), then close."""
        self._parser = None
        self._cancel_handshake_timer()
        self._status = response.status
        if self._transport is not None:
            self._transport.write(response.serialize())
            self._transport.close()

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _reject(self, response: Response, why: str) -> None:
        """Answer with an HTTP error instead of upgrading, then close."""
        self._parser = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        logger.info("handshake from %s refused: %s", self._peer(), why)
        counters.values[counters.HANDSHAKES_REFUSED] += 1
        self._status = response.status
        transport = self._transport
        if transport is not None:
            transport.write(response.serialize())
            transport.close()

    def _accept(self, request: Request, key: str, leftover: bytes) -> None:
        if self._transport is None:
            return
        route = self._route
        if route is None and self._server.application.defers_accept:
            # The application answers the handshake itself (ASGI's websocket.connect): its
            # handler runs now, and accept() or deny() completes the handshake. Until then
            # nothing is read (a client must wait for the 101); handshake_timeout bounds it.
            self._pending = (key, leftover)
            self._transport.pause_reading()
            self._handler_task = self._loop.create_task(self._run_handler(self._server.handler))
            return
        subprotocol = None
        if route is None or route.subprotocols:
            hook = self._server.hooks.subprotocol
            if hook is None:
                subprotocol = negotiate_subprotocol(request, self._server.config.subprotocols)
            else:
                offered = parse_header_list(request.headers.get_all("Sec-WebSocket-Protocol"))
                if offered:
                    self._call_hook(
                        "select_subprotocol",
                        hook,
                        (self, offered),
                        lambda chosen: self._subprotocol_chosen(
                            request, key, leftover, offered, chosen
                        ),
                    )
                    return
        self._send_101(request, key, leftover, subprotocol)

    def _subprotocol_chosen(
        self, request: Request, key: str, leftover: bytes, offered: list[str], chosen: Any
    ) -> None:
        """select_subprotocol's answer. RFC 6455 4.2.2: the server's choice is "one of the
        values" the client sent, so any other answer is the hook's error."""
        if chosen is not None and chosen not in offered:
            self._hook_failed("select_subprotocol", f"chose {chosen!r}, not among {offered}")
            return
        self._send_101(request, key, leftover, chosen)

    def _send_101(
        self, request: Request, key: str, leftover: bytes, subprotocol: str | None
    ) -> None:
        """The 101 with `subprotocol`, through process_response if there is one; then open."""
        route = self._route
        response = self._prepare_accept(request, key, subprotocol, ())
        hook = self._server.hooks.response
        if hook is None or (route is not None and not route.app_hooks):
            self._send_accept(request, response)
            self._start(route, leftover)
        else:
            self._call_hook(
                "process_response",
                hook,
                (self, request, response),
                lambda answer: self._response_answered(request, leftover, response, answer),
            )

    def _response_answered(
        self, request: Request, leftover: bytes, response: Response, answer: Any
    ) -> None:
        """process_response's answer: None sends the (maybe changed) 101, a Response that."""
        if answer is not None and not isinstance(answer, Response):
            self._hook_failed("process_response", f"returned {type(answer).__name__}")
            return
        final = response if answer is None else answer
        if final.status != 101:
            self.subprotocol = None
            self._reject(final, f"{final.status} from process_response")
            return
        if self._transport is None:
            return
        self._send_accept(request, final)
        self._start(self._route, leftover)

    def _start(self, route: WebSocketRoute | None, leftover: bytes) -> None:
        """The connection is open: run its handler (or listener) on what comes next."""
        listener = self._server.listener if route is None else route.listener
        if listener is None:
            handler = self._server.handler if route is None else route.handler
            self._handler_task = self._loop.create_task(self._run_handler(handler))
        self._opened(leftover, listener)
        if self._close_on_open is not None:
            self.close_nowait(*self._close_on_open)

    def _open_connection(
        self,
        request: Request,
        key: str,
        leftover: bytes,
        subprotocol: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> None:
        """Send the 101 (with the compression agreed) and count the connection."""
        self._send_accept(request, self._prepare_accept(request, key, subprotocol, headers))

    def _prepare_accept(
        self,
        request: Request,
        key: str,
        subprotocol: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> Response:
        """The 101 for this request, with the compression agreed (not sent yet)."""
        route = self._route
        self.subprotocol = subprotocol
        extensions = None
        if route is None or route.compression:
            extensions = self._negotiate_compression(request)
        return accept_response(key, subprotocol, extensions, headers)

    def _send_accept(self, request: Request, response: Response) -> None:
        """Send the 101 and count the connection."""
        assert self._transport is not None
        self._cancel_handshake_timer()
        route = self._route
        self._transport.write(response.serialize())
        request.headers.compact()  # the handshake is done with lookups; keep the fields only
        if route is None or route.counted:
            counters.values[counters.HANDSHAKES] += 1
            counters.values[counters.CONNECTIONS_OPEN] += 1
        else:  # its frames are not traffic either (bytes_out)
            self.uncount()
        if route is not None and not route.keepalive:
            self.stop_keepalive()

    # -- a handshake the application answers (defers_accept) --------------------------------

    @property
    def pending(self) -> bool:
        """The opening handshake waits for the application's accept() or deny()."""
        return self._pending is not None

    def accept(
        self, subprotocol: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Complete the opening handshake the application was asked about: send 101 with
        `subprotocol` (one the client offered) and extra `headers`; messages flow from now.
        Raises ConnectionClosed if the client is gone; ValueError for a bad header."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("the handshake is not waiting for accept()")
        transport = self._transport
        if transport is None or self.request is None:
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, "")
        key, leftover = pending
        self._open_connection(self.request, key, leftover, subprotocol, headers)
        self._pending = None
        self._opened(leftover)
        transport.resume_reading()
        if self._close_on_open is not None:
            self.close_nowait(*self._close_on_open)

    def deny(self, response: Response) -> None:
        """Refuse the handshake the application was asked about with an HTTP response."""
        if self._pending is None:
            raise RuntimeError("the handshake is not waiting for deny()")
        self._pending = None
        self._reject(response, f"{response.status} from the application")

    def _negotiate_compression(self, request: Request) -> str | None:
        """Accept the client's first valid permessage-deflate offer, if compression is on."""
        config = self._server.config
        if config.compression == "off":
            return None
        values = request.headers.get_all("Sec-WebSocket-Extensions")
        if not values:
            return None
        takeover = config.compression_context_takeover
        options = DeflateOptions(
            window_bits=config.compression_window_bits,
            memory_level=config.compression_memory_level,
            level=config.compression_level,
            min_size=config.compression_min_size,
            server_context_takeover=takeover in ("server", "both"),
            client_context_takeover=takeover in ("client", "both"),
        )
        # check_upgrade() validated the header's grammar already.
        agreement, declined = negotiate(parse_extensions(values), options)
        if agreement is None:
            if declined:
                logger.info(
                    "permessage-deflate offer from %s declined: %s", self._peer(), declined[0]
                )
            return None
        self._conn.deflate = PerMessageDeflate(agreement, options, client=False)
        return agreement.header()

    async def _run_handler(self, handler: Callable[[Any], Awaitable[None]]) -> None:
        try:
            await handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            counters.values[counters.ERRORS] += 1
            logger.exception("handler failed for %s from %s", self.request_path, self._peer())
            if self._pending is not None:
                self.deny(Response(500, body=b"Internal Server Error\n"))
                return
            await self.close(CloseCode.INTERNAL_ERROR)
            return
        if self._pending is not None:  # ASGI: "exits before accepting ... HTTP 403"
            self.deny(Response(403, body=b"Forbidden\n"))
            return
        await self.close()

    # -- what the application keeps ----------------------------------------------------------

    @property
    def context(self) -> SimpleNamespace:
        """What the application keeps about this connection: any attributes, e.g.
        ``ws.context.user = ...`` in process_request, read by the handler. A type checker
        takes them as Any (a plain ``ws.user = ...`` works too, but is a type error under
        mypy). Made on first use: a connection that keeps nothing carries nothing."""
        attributes = self.__dict__
        context: SimpleNamespace | None = attributes.get("_context")
        if context is None:
            context = attributes["_context"] = SimpleNamespace()
        return context

    # -- channels ---------------------------------------------------------------------------

    @property
    def server(self) -> Server:
        """The server this connection belongs to: `ws.server.publish(...)`, `.broadcast(...)`."""
        return self._server

    def subscribe(self, channel: str) -> None:
        """Receive every message published on `channel` from now on, from any worker (and,
        with Redis, any host), until `unsubscribe` or the connection closes."""
        self._server.require_hub().subscribe(self, channel)

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`'s messages (nothing happens if not subscribed)."""
        hub = self._server.hub
        if hub is not None:
            hub.unsubscribe(self, channel)

    @property
    def channels(self) -> frozenset[str]:
        """The channels this connection is subscribed to."""
        hub = self._server.hub
        return hub.channels(self) if hub is not None else frozenset()

    async def publish(self, channel: str, message: Any) -> None:
        """`ws.server.publish(channel, message)`."""
        await self._server.publish(channel, message)

    @property
    def request_path(self) -> str:
        return self.request.path if self.request is not None else "?"

    def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Start closing for a server stop: Close `code` to open connections; a handshake in
        progress completes first (a reload must not fail a connection attempt it accepted).
        No close timer: `Server.shutdown` decides when a peer has not answered."""
        if self._transport is None:
            return
        if not self._open:
            self._close_on_open = (code, reason)  # the handshake timeout still bounds the wait
        else:
            self._begin_close(code, reason, timer=False)


#: The connection a server's handlers get (coroutine handlers, Listener callbacks, hooks):
#: a `fastws.WebSocket` with the server's parts (channels, `server`, `context`). Exported as
#: `fastws.ServerConnection`, the name `websockets` users know, for type annotations.
ServerConnection = ServerProtocol
