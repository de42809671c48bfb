"""ASGI WebSockets on fastws's own connections.

Each WebSocket the ASGI application owns is an ordinary `ServerProtocol`: the same protocol
core, limits, timeouts, compression, backpressure and counters as a fastws handler. This
module only translates: the connection's handshake waits for the application
(`websocket.connect` -> `websocket.accept` / `websocket.close` / `websocket.http.response.*`),
then `receive()` is `ws.recv()` and `send()` is `ws.send()` / `ws.close()`, both without a
coroutine of the connection's in between on the per-message path (`receive()` awaits the
connection's next message itself; `send()` queues with `send_nowait()` and waits only while
the client is not reading).

Extensions the scope announces:

- ``websocket.http.response``: a denial response (any status, headers and body) instead of
  the upgrade, e.g. Starlette's ``send_denial_response``.
- ``fastws``: ``{"connection": ws}``, the fastws connection behind this scope (channels:
  ``fastws.asgi.connection(websocket).subscribe("room")``), and zero-copy receive: an
  application that accepts with ``{"type": "websocket.accept", "fastws.message": True}``
  receives each large binary message (1 MiB and up: the ones received into a memory
  region of their own) as ``{"bytes": <memoryview>, "fastws.message":
  <Message>}``, a view of the memory the kernel wrote the message into, instead of a copy in
  a new ``bytes`` (small ones stay ``bytes``: they are not copied either). Sending a view
  is zero-copy too; ``{"type": "websocket.send", "bytes": view, "fastws.release": True}``
  with the view received last also gives its memory back once it is written (an echo or a
  relay then reuses one buffer instead of mapping a new one per message).

Without the extension a binary message is `bytes`, as ASGI says, received and unmasked
straight into the bytes object delivered (`fastws.assembler.BytesAssembler`), so ASGI costs
no copy for it either: one in a single frame gets its size up front, a fragmented one (its
size unknown until its last fragment) grows in it by realloc.
"""

from __future__ import annotations

import logging
from asyncio import Future
from typing import TYPE_CHECKING, Any

from ..buffers import MMAP_MIN, BytesBuffer
from ..message import Message
from ..protocol.connection import Chunk
from ..protocol.handshake import Response, parse_header_list
from ..websocket import ConnectionClosed
from . import scope as scopes

if TYPE_CHECKING:
    from ..server.protocol import ServerProtocol
    from .app import ASGIApplication

__all__ = ["ClientDisconnected", "Session"]

logger = logging.getLogger("fastws.asgi")

SPEC = {"version": "3.0", "spec_version": "2.4"}
_CONNECT = {"type": "websocket.connect"}
# A session's states, compared by identity.
_CONNECTING, _CONNECTED, _OPEN, _CLOSED = "connecting", "connected", "open", "closed"


class ClientDisconnected(OSError):
    """send() on a closed WebSocket (ASGI: "a server-specific subclass of OSError")."""


def _str_headers(raw: Any) -> list[tuple[str, str]]:
    return [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in raw]


class Session:
    """One ASGI WebSocket: the scope, and the receive/send the application calls."""

    __slots__ = (
        "_application",
        "_denial",
        "_disconnect",
        "_last",
        "_state",
        "_zero_copy",
        "scope",
        "ws",
    )

    def __init__(self, ws: ServerProtocol, application: ASGIApplication) -> None:
        self.ws = ws
        self._application = application
        request = ws.request
        assert request is not None
        server = ws.server
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": SPEC,
            "http_version": "1.1",
            "scheme": "wss" if server.ssl is not None else "ws",
            "path": scopes.path(request.path),
            "raw_path": request.path.encode("latin-1"),
            "query_string": request.query.encode("latin-1"),
            "root_path": "",
            "headers": scopes.headers(request.headers.raw),
            "client": scopes.address(ws.remote_address),
            "server": application.server_address(server),
            "subprotocols": parse_header_list(request.headers.get_all("Sec-WebSocket-Protocol")),
            "state": dict(application.lifespan.state),
            "extensions": {"websocket.http.response": {}, "fastws": {"connection": ws}},
        }
        self._state = _CONNECTING  # -> _CONNECTED (connect sent) -> _OPEN | _CLOSED
        self._zero_copy = False
        self._denial: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._last: tuple[memoryview, Message] | None = None  # the last view handed out

    @property
    def accepted(self) -> bool:
        """The application accepted the WebSocket (and has not closed it)."""
        return self._state is _OPEN

    async def receive(self) -> dict[str, Any]:
        # The per-message path: the message as received (no conversion of the connection's;
        # a small binary message is its own bytes object), awaited on the connection's
        # Future itself (ws.poll_message(): no coroutine frame in between), the event's dict
        # built in one literal.
        if self._state is not _OPEN:
            if self._state is _CONNECTING:
                self._state = _CONNECTED
                return _CONNECT
            if self._disconnect is not None:
                return self._disconnect
        elif self._disconnect is not None:
            return self._disconnect
        ws = self.ws
        try:
            message = ws.poll_message()
            if type(message) is Future:
                message = await message
            kind = type(message)
            if kind is Chunk:  # what is left of a stream the application abandoned
                message = await ws.skip_stream(message)  # type: ignore[arg-type]
                kind = type(message)
        except ConnectionClosed as exc:
            return self._disconnected(exc)
        if kind is str:
            return {"type": "websocket.receive", "text": message}
        if kind is bytes:  # a small binary message: its own bytes object, no copy
            return {"type": "websocket.receive", "bytes": message}
        return self._large(message)  # type: ignore[arg-type]

    def _large(self, message: Message) -> dict[str, Any]:
        """The receive event of a large binary message (received into its bytes, or in a
        memory region of its own): as bytes, or, zero-copy, as its view."""
        if not self._zero_copy or len(message) < MMAP_MIN:
            with message:  # its memory (or budget charge) goes back for the next message
                buffer = message.buffer
                if type(buffer) is BytesBuffer:  # received into these bytes: no copy
                    return {"type": "websocket.receive", "bytes": buffer.take()}
                # ASGI's one copy: a zero-copy application's message under MMAP_MIN that
                # was assembled in a region (fragments from RESERVE_FROM on)
                return {"type": "websocket.receive", "bytes": message.tobytes()}
        view = message.data
        self._last = (view, message)
        return {"type": "websocket.receive", "bytes": view, "fastws.message": message}

    def _disconnected(self, exc: ConnectionClosed) -> dict[str, Any]:
        self._disconnect = {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        return self._disconnect

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        ws = self.ws
        if self._state is _OPEN:
            try:
                if kind == "websocket.send":
                    # The per-message path: queued for the transport at once (written now
                    # unless more is coming), no coroutine of the connection's in between;
                    # waits only while the client is not reading (backpressure).
                    text = message.get("text")
                    if text is not None:
                        ws.send_nowait(text)
                    else:
                        self._send_bytes(message["bytes"], message.get("fastws.release"))
                    if ws.writing_paused:
                        await ws.drain()
                elif kind == "websocket.close":
                    await ws.close(message.get("code") or 1000, message.get("reason") or "")
                else:
                    raise RuntimeError(f"unexpected ASGI message {kind!r} on an open WebSocket")
            except ConnectionClosed as exc:
                raise ClientDisconnected(f"WebSocket closed: {exc.code} {exc.reason}") from None
            return
        if self._state is _CLOSED or not ws.pending:
            raise ClientDisconnected(f"cannot send {kind!r}: the WebSocket is closed")
        if kind == "websocket.accept":
            headers = _str_headers(message.get("headers") or ())
            zero_copy = bool(message.get("fastws.message"))
            if not zero_copy:  # large binary messages received into the bytes delivered
                ws.use_assembler(self._application.bytes_assembler(ws.server))
            try:
                ws.accept(message.get("subprotocol"), headers)
            except ConnectionClosed:
                self._state = _CLOSED
                raise ClientDisconnected("the client left before the handshake completed") from None
            self._state = _OPEN
            self._zero_copy = zero_copy
        elif kind == "websocket.close":
            # "If this is sent before the socket is accepted, the server must close the
            # connection with a HTTP 403 error code (Forbidden)".
            self._state = _CLOSED
            ws.deny(Response(403, body=b"Forbidden\n"))
        elif kind == "websocket.http.response.start":
            if self._denial is not None:
                raise RuntimeError("websocket.http.response.start sent twice")
            self._denial = (int(message["status"]), _str_headers(message.get("headers") or ()), [])
        elif kind == "websocket.http.response.body":
            if self._denial is None:
                raise RuntimeError("websocket.http.response.body before its start")
            status, headers, body = self._denial
            body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._state = _CLOSED
                ws.deny(Response(status, headers=headers, body=b"".join(body)))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} before the WebSocket is accepted")

    def _send_bytes(self, data: Any, release: Any) -> None:
        last = self._last
        if release and last is not None and data is last[0]:
            # The view of the message received last, sent back (an echo, a relay) with
            # "fastws.release": its memory goes back for the next message as soon as the
            # transport has written it.
            self._last = None
            self.ws.send_nowait(last[1], release=True)
        else:
            self.ws.send_nowait(data)  # bytes-like: written as it is, without a copy


async def run(application: ASGIApplication, ws: ServerProtocol) -> None:
    """The server's handler for the application's WebSockets."""
    session = Session(ws, application)
    try:
        await application.app(session.scope, session.receive, session.send)
    except Exception as exc:
        if not session.accepted or not ws.closed:
            raise  # the server logs it, and answers 500 or closes with 1011
        # The client left and the application let the error of its next send escape (e.g.
        # Starlette's WebSocketDisconnect): the end of the connection, not a failure.
        logger.debug("ASGI application ended on a closed WebSocket: %r", exc)
