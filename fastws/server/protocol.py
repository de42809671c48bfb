"""The server side of one connection: the opening handshake, then the application's handler.

The handshake is parsed by the sans-I/O `protocol.handshake` module; this class only moves
bytes, enforces the handshake timeout, runs the `process_request` hook and starts the handler.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from ..process import counters
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
    negotiate_subprotocol,
    parse_extensions,
)
from ..protocol.proxy import ProxyHeaderError, ProxyHeaderParser
from ..websocket import ConnectionClosed, WebSocket
from . import access

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ServerProtocol"]

logger = logging.getLogger("fastws")

#: Plain HTTP GET routes answered on the WebSocket port (a request without Upgrade).
_HTTP_ROUTES = frozenset({"/healthz", "/metrics"})
#: A worker at max_connections: try again soon, probably on another worker.
_BUSY = Response(503, headers=[("Retry-After", "1")], body=b"Service Unavailable\n")


class ServerProtocol(WebSocket):
    """A connection accepted by a `Server`; the handler sees it as a `WebSocket`."""

    __slots__ = (
        "_close_on_open",
        "_handler_task",
        "_handshake_timer",
        "_parser",
        "_proxy",
        "_server",
        "_started",
        "_status",
    )
    #: Set when the server stops during this connection's handshake: close once it is open.
    _close_on_open: tuple[int, str] | None

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
            budget=server.budget,
            message_timeout=config.message_timeout,
        )
        self._server = server
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
        self._server._connections.add(self)
        self._handshake_timer = self._loop.call_later(
            self._server.config.handshake_timeout, self._handshake_expired
        )

    def connection_lost(self, exc: Exception | None) -> None:
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
        self._server._connections.discard(self)
        hub = self._server.hub
        if hub is not None and hub._rooms_of:
            hub.drop(self)
        if self._open:
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
            self._reject(exc.response(), f"{exc.status} {exc.reason}")
            return
        if request is None:
            return
        self._parser = None
        self.request = request
        proxies = self._server.proxies
        if proxies.active:  # Forwarded / X-Forwarded-For from a trusted proxy
            client = proxies.client(self.remote_address, request.headers)
            if client is not None:
                self.remote_address = client
        if request.path == "/dashboard" and self._server.config.dashboard:
            from . import dashboard  # only a server with --dashboard loads it

            dashboard.answer(self, request, parser.leftover)
            return
        if request.path in _HTTP_ROUTES and "Upgrade" not in request.headers:
            self._answer_http(request.path)
            return
        try:
            key = check_upgrade(request)
            check_origin(request, self._server.config.origins)
        except HandshakeError as exc:
            self._reject(exc.response(), f"{exc.status} {exc.reason}")
            return
        limit = self._server.config.max_connections
        if limit is not None and counters.values[counters.CONNECTIONS_OPEN] >= limit:
            counters.values[counters.BUSY] += 1
            self._reject(_BUSY, f"503 max_connections ({limit}) reached")
            return
        hook = self._server.config.process_request
        if hook is None:
            self._accept(request, key, parser.leftover)
            return
        try:
            answer = hook(request)
        except Exception:
            counters.values[counters.ERRORS] += 1
            logger.exception("process_request failed for %s", request.path)
            self._reject(Response(500, body=b"Internal Server Error\n"), "500 process_request")
            return
        if inspect.isawaitable(answer):
            self._transport.pause_reading()  # type: ignore[union-attr]
            task = self._loop.create_task(self._await_hook(answer, request, key, parser.leftover))
            self._handler_task = task
        else:
            self._answer_hook(answer, request, key, parser.leftover)

    async def _await_hook(self, answer: Any, request: Request, key: str, leftover: bytes) -> None:
        try:
            response = await answer
        except Exception:
            counters.values[counters.ERRORS] += 1
            logger.exception("process_request failed for %s", request.path)
            self._reject(Response(500, body=b"Internal Server Error\n"), "500 process_request")
            return
        if self._transport is None:
            return
        self._transport.resume_reading()
        self._answer_hook(response, request, key, leftover)

    def _answer_hook(
        self, response: Response | None, request: Request, key: str, leftover: bytes
    ) -> None:
        if response is None:
            self._accept(request, key, leftover)
        else:
            self._reject(response, f"{response.status} from process_request")

    def _proxy_header(self, reader: ProxyHeaderParser, data: memoryview) -> memoryview | None:
        """Read the PROXY protocol header; what follows it, once complete, else None."""
        try:
            header = reader.feed(data)
        except ProxyHeaderError as exc:
            # proxy-protocol.txt: the receiver "MUST NOT start processing the connection
            # before it receives a complete and valid PROXY protocol header": drop it.
            self._parser = None
            self._cancel_handshake_timer()
            logger.info("connection from %s refused: %s", self._peer(), exc)
            counters.values[counters.HANDSHAKES_REFUSED] += 1
            if self._transport is not None:
                self._transport.close()
            return None
        if header is None:
            return None
        self._proxy = None
        proxies = self._server.proxies
        if header.source is not None and (
            proxies.mode == "require" or proxies.trusts(self.remote_address)
        ):
            self.remote_address = header.source
        return memoryview(reader.leftover) if reader.leftover else None

    def _answer_http(self, path: str) -> None:
        """Plain HTTP GET /healthz or /metrics (no Upgrade header): the whole server's state."""
        from ..process import metrics  # only the monitoring path needs it

        counters.values[counters.HTTP_REQUESTS] += 1  # before the snapshot: it counts itself
        board = self._server.scoreboard
        self._server.sample_gauges()
        if board is not None:
            board.beat(self._server.scoreboard_slot)  # this worker's own counts: up to date
        snap = metrics.snapshot(board)
        if path == "/metrics":
            body, kind = metrics.prometheus(snap), metrics.CONTENT_TYPE
        else:
            body, kind = metrics.healthz(snap), "application/json"
        self._respond(Response(200, headers=[("Content-Type", kind)], body=body.encode()))

    def _respond(self, response: Response) -> None:
        """Answer a plain HTTP request (/healthz, /metrics, /dashboard), then close."""
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
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.subprotocol = negotiate_subprotocol(request, self._server.config.subprotocols)
        extensions = self._negotiate_compression(request)
        self._transport.write(accept_response(key, self.subprotocol, extensions).serialize())
        request.headers.compact()  # the handshake is done with lookups; keep the fields only
        counters.values[counters.HANDSHAKES] += 1
        counters.values[counters.CONNECTIONS_OPEN] += 1
        listener = self._server.listener
        if listener is None:
            self._handler_task = self._loop.create_task(self._run_handler())
        self._opened(leftover, listener)
        if self._close_on_open is not None:
            self.close_nowait(*self._close_on_open)

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

    async def _run_handler(self) -> None:
        try:
            await self._server.handler(self)  # type: ignore[operator]  # not a Listener here
        except ConnectionClosed:
            pass
        except Exception:
            counters.values[counters.ERRORS] += 1
            logger.exception("handler failed for %s from %s", self.request_path, self._peer())
            await self.close(CloseCode.INTERNAL_ERROR)
            return
        await self.close()

    # -- channels ---------------------------------------------------------------------------

    @property
    def server(self) -> Server:
        """The server this connection belongs to: `ws.server.publish(...)`, `.broadcast(...)`."""
        return self._server

    def subscribe(self, channel: str) -> None:
        """Receive every message published on `channel` from now on, from any worker (and,
        with Redis, any host), until `unsubscribe` or the connection closes."""
        self._server._hub().subscribe(self, channel)

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
        progress completes first (a reload must not fail a connection attempt it accepted)."""
        if self._transport is None:
            return
        if not self._open:
            self._close_on_open = (code, reason)  # the handshake timeout still bounds the wait
        else:
            self.close_nowait(code, reason)
