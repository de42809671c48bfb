"""Browsers' recorded opening handshakes, replayed byte for byte: no browser needed.

These run wherever the suite runs, so a change in fastws' handshake parsing that would refuse a
real browser fails here even on machines without Chromium.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.recorded import CHROMIUM_156_UPGRADE, header_fields
from tests.wire import OP_TEXT, WireClient, accept_key

if TYPE_CHECKING:
    from tests.conftest import ServerProcess


def test_chromium_156_upgrade_request(subprotocol_server: ServerProcess) -> None:
    """Chromium's upgrade request, exactly as it sent it (header case, Pragma/Cache-Control,
    the permessage-deflate offer, two subprotocols), gets a 101 with the right accept key and
    "chat", and the connection then carries messages."""
    key = dict(header_fields(CHROMIUM_156_UPGRADE)[1])["Sec-WebSocket-Key"]
    with WireClient(subprotocol_server.port) as wire:
        wire.send_raw(CHROMIUM_156_UPGRADE)
        response = wire.read_http_response()
        assert response.status == 101, response
        assert response.headers["sec-websocket-accept"] == accept_key(key), response
        assert response.headers["sec-websocket-protocol"] == "chat", response
        extensions = response.headers.get("sec-websocket-extensions")
        if extensions is not None:  # compression agreed: frames may be compressed from here
            assert extensions.startswith("permessage-deflate"), response
            return
        assert wire.recv_message() == (OP_TEXT, b'"chat"')  # what the handler negotiated
        wire.send_text("hello from a recorded Chromium")
        assert wire.recv_message() == (OP_TEXT, b"hello from a recorded Chromium")
