"""fastws.exceptions: one module, exported from fastws, same classes at their old places."""

from __future__ import annotations

import pytest

import fastws
import fastws.exceptions as exceptions
import fastws.protocol.handshake
import fastws.sync
import fastws.websocket
from fastws.protocol.http11 import error_response


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1000, fastws.ConnectionClosedOK),
        (1001, fastws.ConnectionClosedOK),
        (1005, fastws.ConnectionClosedOK),
        (1006, fastws.ConnectionClosedError),
        (1011, fastws.ConnectionClosedError),
        (4000, fastws.ConnectionClosedError),
    ],
)
def test_close_code_mapping(code: int, cls: type[fastws.ConnectionClosed]) -> None:
    """A normal end (1000, 1001, no status) is ConnectionClosedOK, anything else an error,
    as in the websockets library; code and reason are kept."""
    exc = exceptions.closed(code, "why")
    assert type(exc) is cls
    assert (exc.code, exc.reason) == (code, "why")


def test_one_class_per_name_wherever_imported() -> None:
    """Code that imported an exception from its old module catches the same class."""
    assert fastws.websocket.ConnectionClosed is fastws.ConnectionClosed
    assert fastws.websocket.ConnectionClosedOK is fastws.ConnectionClosedOK
    assert fastws.sync.ConnectionClosedError is fastws.ConnectionClosedError
    assert fastws.protocol.handshake.InvalidHandshake is fastws.InvalidHandshake
    assert fastws.protocol.handshake.HandshakeError is fastws.HandshakeError
    assert fastws.sync.InvalidHandshake is fastws.InvalidHandshake


def test_every_exception_is_a_websocket_exception_and_exported() -> None:
    """`except fastws.WebSocketException` catches all of them; each is in fastws.__all__."""
    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if isinstance(obj, type):
            assert issubclass(obj, exceptions.WebSocketException)
            assert name in fastws.__all__ and getattr(fastws, name) is obj
    assert issubclass(fastws.InvalidStatus, fastws.InvalidHandshake)
    assert issubclass(fastws.InvalidURI, ValueError)


def test_handshake_error_response() -> None:
    """The server's refusal becomes a plain-text response with its status and headers."""
    response = fastws.HandshakeError(426, "upgrade required", [("Sec-WebSocket-Version", "13")])
    wire = error_response(response).serialize()
    assert wire.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13\r\n" in wire and wire.endswith(b"upgrade required\n")
