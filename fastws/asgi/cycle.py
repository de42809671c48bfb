"""One HTTP/1.1 request and its response, as an ASGI `http` scope's `receive` and `send`.

`HTTPConnection` (http.py) parses the requests of a connection and runs the application once
per request with a `Cycle`; the cycle holds the request body as it arrives and frames the
response the application sends (status line, headers, Content-Length or chunked body).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any, Protocol

__all__ = ["PHRASES", "Cycle", "status_line"]


class _Connection(Protocol):
    """What a Cycle needs of the connection it answers on (HTTPConnection provides it)."""

    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop
    closing: bool
    close_after: bool
    writing_paused: bool

    def want_body(self) -> None: ...

    def restart_body_timer(self) -> None: ...

    async def drain(self) -> None: ...


_DISCONNECT = {"type": "http.disconnect"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PHRASES = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable",
}  # fmt: skip
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if type(status) is not int or not 100 <= status <= 999:
            raise RuntimeError(f"invalid HTTP status {status!r}")
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {PHRASES.get(status, '')}\r\n".encode()
    return line


_date = [0, b""]


def _date_header() -> bytes:
    """`date: ...` (RFC 9110 6.6.1), formatted once a second."""
    now = int(time.time())
    if _date[0] != now:
        _date[0] = now
        _date[1] = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date[1]  # type: ignore[return-value]


_BAD_NAME = frozenset(b"\r\n:\0 \t")


def _check_header(name: bytes, value: bytes) -> None:
    """Refuse a response header that would split the response (header injection)."""
    if not name or _BAD_NAME.intersection(name) or b"\n" in value or b"\r" in value:
        raise RuntimeError(f"invalid response header {name!r}: {value!r}")


class Cycle:
    """One request and its response: the `receive` and `send` its application run gets."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_continue",
        "_head",
        "_length",
        "_wake",
        "body",
        "body_done",
        "body_size",
        "complete",
        "delivered",
        "disconnected",
        "head_only",
        "keep_alive",
        "scope",
        "started",
    )

    def __init__(
        self, conn: _Connection, scope: dict[str, Any], keep_alive: bool, expect: bool
    ) -> None:
        self._conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self._continue = expect  # a 100 Continue is owed when the body is asked for
        self.head_only = scope["method"] == "HEAD"
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_done = False
        self.delivered = False  # the last body piece went to the application
        self.disconnected = False
        self.started = False
        self.complete = False
        self._head: bytes | None = None  # written with the first body piece
        self._chunked = False
        self._length: int | None = None  # Content-Length left to send
        self._wake: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self._wake
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        conn = self._conn
        while True:
            if self.disconnected or self.complete:
                return _DISCONNECT
            if self.body or (self.body_done and not self.delivered):
                break
            if self._continue and conn.transport is not None:
                # RFC 9110 10.1.1: "A server that receives a 100-continue expectation in an
                # HTTP/1.1 request ... MAY send a 100 (Continue) interim response"; sent
                # only now, when the application wants the body.
                self._continue = False
                conn.transport.write(_CONTINUE)
                conn.restart_body_timer()
            conn.want_body()
            self._wake = conn.loop.create_future()
            await self._wake
        chunks = self.body
        self.body = []
        if self.body_done:
            self.delivered = True  # later calls wait for the end (http.disconnect)
        else:
            conn.want_body()
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        return {"type": "http.request", "body": body, "more_body": not self.body_done}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        conn = self._conn
        if kind == "http.response.body":
            if not self.started or self.complete:
                raise RuntimeError(
                    "http.response.body before http.response.start"
                    if not self.started
                    else "http.response.body after the response was complete"
                )
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.disconnected:
                self.complete = not more
                return
            out: list[Any] = []
            head = self._head
            if head is not None:
                self._head = None
                out.append(head)
            if self.head_only:
                pass
            elif self._chunked:
                if body:
                    out += (b"%x\r\n" % len(body), body, b"\r\n")
                if not more:
                    out.append(b"0\r\n\r\n")
            elif body:
                if self._length is not None:
                    self._length -= len(body)
                    if self._length < 0:
                        raise RuntimeError("response body longer than its Content-Length")
                out.append(body)
            if not more:
                self.complete = True
                if self._length:
                    conn.close_after = True  # shorter than announced: the client must know
            transport = conn.transport
            if out and transport is not None:
                if len(out) == 1:
                    transport.write(out[0])
                else:
                    transport.write(b"".join(out))
            if self.complete:
                self.wake()
            elif conn.writing_paused:
                await conn.drain()
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self._head = self._build_head(message)  # raises on a bad header: then a 500
            self.started = True
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def _build_head(self, message: dict[str, Any]) -> bytes:
        status = message["status"]
        parts = [status_line(status)]
        length: int | None = None
        chunked = False
        # A 100-continue never sent: the client may or may not send the body now.
        keep_alive = self.keep_alive and not self._conn.closing and not self._continue
        for name, value in message.get("headers", ()):
            lname = bytes(name).lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in bytes(value).lower()
                continue  # set below, once
            elif lname == b"connection":
                if b"close" in bytes(value).lower():
                    keep_alive = False
                continue  # set below
            _check_header(lname, value)
            parts.append(lname + b": " + bytes(value) + b"\r\n")
        bodiless = status < 200 or status in (204, 304)
        if not bodiless and length is None:
            if self.scope["http_version"] == "1.1":
                chunked = True
            elif not self.head_only:
                keep_alive = False  # HTTP/1.0: the body ends when the connection does
        if chunked and not bodiless:
            parts.append(b"transfer-encoding: chunked\r\n")
            length = None
        self._chunked = chunked and not bodiless
        if bodiless:
            # RFC 9110 6.4.1: 1xx, 204 and 304 responses end with their header section.
            self.head_only = True
        self._length = length if not self.head_only else None
        parts.append(_date_header())
        if not keep_alive:
            parts.append(b"connection: close\r\n\r\n")
            self._conn.close_after = True
        elif self.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)
