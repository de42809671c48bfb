"""HTTP/1.1 for ASGI applications, on the same port as their WebSockets.

Every connection of an ASGI application starts here; each request's `receive`/`send` is a
`Cycle` (cycle.py). Requests are parsed by httptools
(llhttp, the parser of Node.js: ~1.3 us a request here, against ~37 us for h11, which is
pure Python; see the README's ASGI section) and answered one after the other:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked); pipelined requests are parsed as
  they come and answered in order, each by its own run of the application;
- request bodies, chunked or not, come to the application in pieces as they arrive (reading
  pauses while more than `_BODY_HIGH` bytes wait for it); responses without Content-Length
  are sent chunked (HTTP/1.1) or delimited by closing (HTTP/1.0);
- ``Expect: 100-continue`` is answered when the application first asks for the body;
- limits: max_request_line (414), max_headers and max_header_size (431), max_message_size
  for a body (413), handshake_timeout for a request head and for an idle connection,
  body_timeout for a request body (408: a client that trickles it, or stops sending);
- `http.disconnect` once the client is gone or the response is complete;
- `send()` waits while the client does not read (the transport is over write_limit).

A WebSocket upgrade is handed to `ServerProtocol.upgrade` once the requests before it are
answered: from then on the connection is fastws's own WebSocket. Registered routes
(/healthz, /metrics, the dashboard's page) are answered here, before the application.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from ..protocol.handshake import Headers, Request
from ..protocol.proxy import ProxyHeaderError, ProxyHeaderParser
from ..server.hooks import HTTPGate
from ..server.protocol import ServerProtocol
from ..server.proxy import drop
from ..server.routes import HTTPRoute
from ..stats import counters
from . import scope as scopes
from .cycle import PHRASES, Cycle, status_line

if TYPE_CHECKING:
    from ..server.server import Server
    from .app import ASGIApplication

__all__ = ["HTTPConnection"]

logger = logging.getLogger("fastws.asgi")

SPEC = {"version": "3.0", "spec_version": "2.4"}
#: Request body bytes buffered for the application before reading pauses.
_BODY_HIGH = 256 * 1024
#: Pipelined requests parsed ahead of the one being answered before reading pauses.
_PIPELINE = 16


def _error(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        status_line(status)
        + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


class _Refused(Exception):
    """A request over a limit, or malformed: answered with `status` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HTTPConnection(asyncio.Protocol):
    """One client connection speaking HTTP/1.1 to an ASGI application."""

    def __init__(self, server: Server, application: ASGIApplication) -> None:
        self._server = server
        self._application = application
        self._app = application.app
        config = server.config
        self._max_line = config.max_request_line
        self._max_headers = config.max_headers
        self._max_header_size = config.max_header_size
        self._max_body = config.max_message_size
        self._timeout = config.handshake_timeout
        self._body_timeout = config.body_timeout
        self.loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._client: Any = None
        # The PROXY protocol header expected first (see server.proxy), the client it named.
        self._proxy: ProxyHeaderParser | None = server.proxies.reader()
        self._proxied: tuple[str, int] | None = None
        self._sockname: Any = None
        self._scheme = "https" if server.ssl is not None else "http"
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._upgrade_request: Request | None = None
        self._upgrade: tuple[Request, bytes] | None = None  # waiting for earlier answers
        self._current: Cycle | None = None  # the request whose body is arriving
        self._cycles: deque[Cycle] = deque()  # answered in order; [0] is being answered
        self._timer: asyncio.TimerHandle | None = None
        # body_timeout for the body arriving (self._current's): armed only while one does.
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self.writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.closing = False  # the server stops: close once the current answers are out
        self.close_after = False  # the response being sent ends the connection
        self._refusal: bytes | None = None  # an error answer waiting for earlier answers
        # process_request and the access log, when configured (server.hooks.HTTPGate).
        self._gate = HTTPGate.for_server(server)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=self._server.config.write_limit)  # type: ignore[attr-defined]
        self._client = scopes.address(transport.get_extra_info("peername"))
        self._sockname = scopes.sockname(transport)
        self._application.connections.add(self)
        self._timer = self.loop.call_later(self._timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._application.connections.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_body_timer()
        for cycle in self._cycles:
            cycle.disconnected = True
            cycle.wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self._upgrade is not None:
            return  # nothing more is read from this connection
        if self._proxy is not None:
            rest = self._proxy_header(self._proxy, data)
            if not rest:
                return
            data = rest
        try:
            self._parser.feed_data(data)
            if self._current is not None and self._body_timer is None and self._body_timeout:
                # A request body has begun and is not complete (requests without a body,
                # or whose body came with the head, never arm it).
                self._body_timer = self.loop.call_later(
                    self._body_timeout, self._body_timed_out, self._current
                )
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.reason)
            else:
                logger.error("HTTP parser callback failed", exc_info=refused)
                self._refuse(500, "internal error")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request ({exc})")

    def eof_received(self) -> bool | None:
        """The client closed its side: the connection ends (as with uvicorn), and the
        requests in progress see http.disconnect (connection_lost)."""
        return None

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.transport is None:
            return
        waiter = self._drain_waiter
        if waiter is None or waiter.done():
            waiter = self._drain_waiter = self.loop.create_future()
        await asyncio.shield(waiter)

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_line:
            # RFC 9110 15.5.15: 414 "the target URI is longer than the server is willing
            # to interpret".
            raise _Refused(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_header_size:
            # RFC 6585 5: 431 "the server is unwilling to process the request because its
            # header fields are too large".
            raise _Refused(431, "request headers too large")
        if len(self._headers) >= self._max_headers:
            raise _Refused(431, "too many request headers")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parser = self._parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        raw = self._headers
        url = self._url
        if parser.should_upgrade() and self._is_websocket(raw):
            self._upgrade_request = self._handshake_request(method, version, url, raw)
            return
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        elif url == b"*":
            raw_path, query = url, b""
        else:  # absolute-form (RFC 9112 3.2.2), sent to proxies
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        headers = [(name.lower(), value) for name, value in raw]
        expect = False
        for name, value in headers:
            if name == b"content-length":
                try:
                    if int(value) > self._max_body:
                        raise _Refused(413, "request body too large")
                except ValueError:
                    raise _Refused(400, "invalid Content-Length") from None
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = version == "1.1"
        path = raw_path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": SPEC,
            "http_version": version,
            "server": self._sockname,
            "client": self._server.proxies.client_of(self._client, raw),  # behind a proxy
            "scheme": self._scheme,
            "method": method,
            "root_path": "",
            "path": scopes.path(path),
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "state": dict(self._application.lifespan.state),
        }
        cycle = Cycle(self, scope, parser.should_keep_alive(), expect)
        self._current = cycle
        cycles = self._cycles
        cycles.append(cycle)
        if len(cycles) == 1:
            self._start(cycle)
        elif len(cycles) > _PIPELINE:
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self._current
        if cycle is None or cycle.complete:
            return  # answered without reading its body: discarded
        cycle.body_size += len(body)
        if cycle.body_size > self._max_body:
            raise _Refused(413, "request body too large")
        cycle.body.append(body)
        cycle.wake()
        if cycle.body_size > _BODY_HIGH and not self._reading_paused:
            queued = sum(map(len, cycle.body))
            if queued > _BODY_HIGH:
                self._pause_reading()

    def on_message_complete(self) -> None:
        cycle = self._current
        if cycle is not None:
            cycle.body_done = True
            cycle.wake()
            self._current = None
            if self._body_timer is not None:
                self._stop_body_timer()

    # -- requests ------------------------------------------------------------------------------

    @staticmethod
    def _is_websocket(raw: list[tuple[bytes, bytes]]) -> bool:
        for name, value in raw:
            if name.lower() == b"upgrade" and b"websocket" in value.lower():
                return True
        return False

    def _handshake_request(
        self, method: str, version: str, url: bytes, raw: list[tuple[bytes, bytes]]
    ) -> Request:
        target = url.decode("latin-1")
        resource = target
        if target[:1] != "/":
            parsed = httptools.parse_url(url)
            resource = (parsed.path or b"/").decode("latin-1")
            if parsed.query:
                resource += "?" + parsed.query.decode("latin-1")
        path, _, query = resource.partition("?")
        headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw)
        return Request(method, target, path, query, "HTTP/" + version, headers)

    def _upgraded(self, leftover: bytes) -> None:
        request, self._upgrade_request = self._upgrade_request, None
        if request is None:  # an upgrade to something else: answered as plain HTTP
            self._parser = httptools.HttpRequestParser(self)
            if leftover:
                self.data_received(leftover)
            return
        # RFC 6455 4.2.1: "An HTTP/1.1 or higher GET request".
        if request.method != "GET":
            self._refuse(405, "only GET can open a WebSocket")
            return
        if request.version != "HTTP/1.1":
            self._refuse(400, "HTTP/1.1 required")
            return
        self._upgrade = (request, leftover)
        if self._cycles:
            self._pause_reading()  # handed over once the requests before it are answered
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        assert self._upgrade is not None
        request, leftover = self._upgrade
        transport = self.transport
        if transport is None:
            return
        self._application.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if self._reading_paused:
            transport.resume_reading()
        ServerProtocol.upgrade(self._server, transport, request, leftover, self._proxied)

    def _start(self, cycle: Cycle) -> None:
        counters.values[counters.HTTP_REQUESTS] += 1
        route = self._server.routes.http.get(cycle.scope["path"])
        app = self._app if route is None else _route_app(self._server, route)
        if self._gate is not None:  # the request hook first, then the route or the app
            app = self._gate.wrap(app, self.transport)
        self.loop.create_task(self._run(cycle, app))

    async def _run(self, cycle: Cycle, app: Any) -> None:
        try:
            await app(cycle.scope, cycle.receive, cycle.send)
        except Exception as exc:
            if cycle.disconnected and not cycle.started:
                # Its request was cut (client gone, body timed out, refused): e.g.
                # Starlette's ClientDisconnect from request.body(); already logged as such.
                logger.debug("ASGI application ended on a cut request: %r", exc)
                return
            counters.values[counters.ERRORS] += 1
            logger.error(
                "ASGI application failed on %s %s", cycle.scope["method"], cycle.scope["path"],
                exc_info=exc,
            )  # fmt: skip
            if not cycle.started:
                self._write_error(500, "Internal Server Error")
            elif not cycle.complete and self.transport is not None:
                self.transport.close()  # the response is cut short: the client must see it
        else:
            if not cycle.started:
                logger.error(
                    "ASGI application returned without a response to %s", cycle.scope["path"]
                )
                self._write_error(500, "Internal Server Error")
            elif not cycle.complete and self.transport is not None:
                logger.error("ASGI application returned with its response to %s unfinished", cycle.scope["path"])  # fmt: skip
                self.transport.close()
        finally:
            self._finished(cycle)

    def _write_error(self, status: int, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_error(status, text))
            self.close_after = True

    def _finished(self, cycle: Cycle) -> None:
        """A response is complete: next request, the pending upgrade, or wait for more."""
        cycle.complete = True
        cycle.wake()
        cycles = self._cycles
        if cycles and cycles[0] is cycle:
            cycles.popleft()
        transport = self.transport
        if transport is None:
            return
        if self.close_after or self.closing:
            transport.close()
            return
        if cycles:
            self._start(cycles[0])
        elif self._refusal is not None:
            transport.write(self._refusal)
            transport.close()
            return
        elif self._upgrade is not None:
            self._hand_over()
            return
        if self._reading_paused and len(cycles) <= _PIPELINE // 2:
            self._reading_paused = False
            transport.resume_reading()
        if not cycles and self._timer is None:
            self._timer = self.loop.call_later(self._timeout, self._timed_out)

    def want_body(self) -> None:
        """The application waits for body bytes: read again if that was paused for it."""
        if self._reading_paused and len(self._cycles) <= _PIPELINE // 2:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
            self.restart_body_timer()

    def restart_body_timer(self) -> None:
        """The server's own wait is over (reading resumed, or the 100 Continue sent): the
        client gets a whole body_timeout from now, not what was left of the period."""
        cycle = self._current
        if self._body_timer is not None and cycle is not None:
            self._body_timer.cancel()
            assert self._body_timeout is not None
            self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out, cycle)

    def _proxy_header(self, reader: ProxyHeaderParser, data: bytes) -> bytes | None:
        """Read the PROXY protocol header; the bytes after it once complete, else None."""
        try:
            rest, client = self._server.proxies.take_header(reader, data, self._client)
        except ProxyHeaderError as exc:
            drop(self.transport, str(self._client), exc)
            return None
        if rest is None:
            return None
        self._proxy = None
        if client is not None:
            self._client = self._proxied = client
        return rest

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we will not pass on, after the answers before it; then close."""
        logger.info("HTTP request from %s refused: %d %s", self._who(), status, reason)
        counters.values[counters.HANDSHAKES_REFUSED] += 1
        self._refusal = _error(status, PHRASES.get(status, "Error"))
        self._pause_reading()
        self._stop_body_timer()
        current = self._current
        if current is not None and current in self._cycles:
            current.disconnected = True  # its body will not come
            current.wake()
        transport = self.transport
        if transport is not None:
            if not self._cycles:
                transport.write(self._refusal)
                transport.close()
            elif self._cycles[0] is current and current is not None and not current.started:
                # The request being answered is the refused one, and nothing of its response
                # is out yet: the refusal is its answer, now (the application's run ends with
                # http.disconnect; whatever it sends is dropped).
                transport.write(self._refusal)
                self.close_after = True
                transport.close()
        if self._gate is not None:  # the access log's line
            self._gate.refused(transport, self._client, status)

    def _who(self) -> str:
        peer = self._client
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self, cycle: Cycle) -> None:
        """body_timeout passed with `cycle`'s body incomplete: 408 (or, once its response
        has begun, close), unless the wait was the server's own."""
        self._body_timer = None
        if self._current is not cycle or self.transport is None or self._refusal is not None:
            return
        if self._reading_paused or (cycle._continue and not cycle.complete):
            # Reading paused for the application, or a 100 Continue the client waits for
            # not sent yet: not the client's delay. The period starts again.
            assert self._body_timeout is not None
            self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out, cycle)
            return
        reason = (
            f"request body incomplete after {self._body_timeout:g} s"
            f" ({cycle.body_size} bytes received)"
        )
        if cycle.started:
            # RFC 9110 15.5.9 (408) needs a response not begun (or answered already, the
            # body unread): the connection can only be closed.
            logger.info("HTTP request from %s: %s; connection closed", self._who(), reason)
            cycle.disconnected = True
            cycle.wake()
            self.close_after = True
            self.transport.close()
            return
        # RFC 9110 15.5.9: 408 "the server did not receive a complete request message
        # within the time that it was prepared to wait".
        self._refuse(408, reason)

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport is not None and not self._cycles:
            self.transport.close()  # idle keep-alive, or a request head too slow

    def shutdown(self) -> None:
        """The server stops: close now if idle, else after the responses in progress."""
        self.closing = True
        if not self._cycles and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _route_app(server: Server, route: HTTPRoute) -> Any:
    """A registered route (/healthz, /metrics, ...) as a small ASGI application."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        query = scope["query_string"].decode("latin-1")
        target = scope["raw_path"].decode("latin-1") + ("?" + query if query else "")
        request = Request(scope["method"], target, scope["path"], query, "HTTP/1.1", headers)
        response = route(server, request)
        fields = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
        if not any(name == b"content-length" for name, _ in fields):
            fields.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": fields})
        await send({"type": "http.response.body", "body": response.body})

    return app
