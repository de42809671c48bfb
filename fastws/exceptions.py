"""Every exception fastws raises at its users, in one module (exported from `fastws`).

    WebSocketException
    ├── ConnectionClosed            the connection is closed (code, reason)
    │   ├── ConnectionClosedOK      1000, 1001 or no status code: a normal end
    │   └── ConnectionClosedError   any other code, or no closing handshake (1006)
    ├── InvalidURI                  not a ws:// or wss:// URI (also a ValueError)
    ├── InvalidHandshake            the client refuses the server's answer to its upgrade
    │   └── InvalidStatus           ... because it is not 101 (`exc.response.status`)
    └── HandshakeError              the server refuses a client's upgrade with an HTTP status

The names and the split between OK and Error follow the `websockets` library, so that code
written against it catches the same cases here. A leaf module: it imports nothing of fastws
at run time, so the protocol core and both I/O layers can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.http11 import ClientResponse

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "WebSocketException",
    "closed",
]


class WebSocketException(Exception):
    """Base class of the exceptions below: `except fastws.WebSocketException` catches them all."""


class ConnectionClosed(WebSocketException):
    """The connection is closed; `code` and `reason` say how (1006: no closing handshake)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally: 1000, 1001, or a Close frame without a code."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or without a closing handshake."""


# RFC 6455 7.4.1: 1000 "normal closure", 1001 "going away"; 1005 stands for a Close frame
# that carried no code, which the peer may send for a normal end as well.
_OK_CODES = frozenset((1000, 1001, 1005))


def closed(code: int, reason: str) -> ConnectionClosed:
    """The exception that reports a connection closed with `code`: OK or Error by the code."""
    cls = ConnectionClosedOK if code in _OK_CODES else ConnectionClosedError
    return cls(code, reason)


class InvalidURI(WebSocketException, ValueError):
    """`uri` is not a WebSocket URI the client can connect to; `msg` says why.

    A ValueError too: code written when the client raised ValueError still catches it.
    """

    def __init__(self, uri: str, msg: str) -> None:
        super().__init__(f"{uri!r} isn't a valid WebSocket URI: {msg}")
        self.uri = uri
        self.msg = msg


class InvalidHandshake(WebSocketException):
    """The client refuses the server's response (RFC 6455: _Fail the WebSocket Connection_).

    `response` is the server's response head when one arrived (None when the connection
    closed or the bytes were not HTTP).
    """

    def __init__(self, message: str, response: ClientResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade with a status other than 101 (`response.status`)."""

    response: ClientResponse

    def __init__(self, response: ClientResponse) -> None:
        reason = f" {response.reason}" if response.reason else ""
        super().__init__(
            f"server rejected WebSocket connection: HTTP {response.status}{reason}", response
        )


class HandshakeError(WebSocketException):
    """The server refuses the handshake with HTTP ``status``.

    ``reason`` goes to the client, so it must never carry internal detail;
    ``headers`` are extra response headers (426 carries the supported version).
    `fastws.protocol.http11.error_response(exc)` is the HTTP answer that carries them.
    """

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status, reason, list(headers))
        self.status = status
        self.reason = reason
        self.headers = list(headers)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"
