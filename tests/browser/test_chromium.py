"""What only Chromium (driven by Playwright) is tested for, against real fastws processes.

The tests every driven browser runs are in test_driven.py. Here: what Chromium does that
others do not (fail a connection without a subprotocol it asked for) and what is on the wire
(how it fragments, its upgrade request byte for byte, RSV1), seen by a recording proxy
(proxy.py) between Chromium and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.browser.checks import (
    DRIVER_SIZES,
    LONG_TEXT,
    MiB,
    check_binary,
    check_rejected,
    check_subprotocol,
    check_text,
)
from tests.browser.conftest import ChromiumPage
from tests.browser.proxy import ProxiedConnection, RecordingProxy, messages
from tests.browser.recorded import CHROMIUM_156_UPGRADE, WEBSOCKET_FIELDS, header_fields
from tests.wire import WireClient, accept_key

if TYPE_CHECKING:
    from tests.browser.site import TestSite
    from tests.conftest import ServerFactory, ServerProcess

#: The server options that turn permessage-deflate on (RFC 7692, fastws' `compression` knob).
COMPRESSION_ON = {"compression": "deflate"}


def run(page: Any, where: str, name: str, *args: Any) -> Any:
    """Call wsclient.mjs's `name(*args)` in the page or in a dedicated Web Worker."""
    return ChromiumPage(page).run(where, name, *args)


def only_connection(proxy: RecordingProxy) -> ProxiedConnection:
    assert len(proxy.connections) == 1, proxy.connections
    connection = proxy.connections[0]
    assert connection.done.wait(5), "the proxied connection did not finish"
    return connection


# ---------------------------------------------------------------------------------------------
# Subprotocols
# ---------------------------------------------------------------------------------------------


def test_no_common_subprotocol(page: Any, no_common_subprotocol: ServerProcess) -> None:
    """When the server supports none of the offered subprotocols it upgrades without one (RFC
    6455 4.2.2 allows it) and the browser then fails the connection, as the WHATWG WebSocket
    spec requires of a page that asked for subprotocols: the page sees error + 1006."""
    server = no_common_subprotocol
    check_rejected(run(page, "page", "handshake", server.url, ["chat", "superchat"], True))
    check_subprotocol(run(page, "page", "handshake", server.url, None, True), "")


# ---------------------------------------------------------------------------------------------
# Fragmentation
# ---------------------------------------------------------------------------------------------


def test_large_messages_are_reassembled(page: Any, echo: ServerProcess) -> None:
    """Chromium sends a 1 MiB message as a first frame plus continuation frames (131,000 B in
    Chromium 156): fastws reassembles them, binary byte-exact and text with UTF-8 characters
    cut in two by frame boundaries."""
    with RecordingProxy(echo.port) as proxy:
        check_binary(run(page, "page", "binaryRoundTrips", proxy.url_for("/"), [MiB]), [MiB])
        check_text(run(page, "page", "textRoundTrips", proxy.url_for("/")))
    binary_conn, text_conn = proxy.connections
    [binary] = messages(binary_conn.client_frames)
    assert len(binary) > 1, f"Chromium sent 1 MiB in one frame: {binary}"
    assert [f.opcode for f in binary] == [2] + [0] * (len(binary) - 1), binary
    assert sum(f.length for f in binary) == MiB
    long_text = messages(text_conn.client_frames)[-1]
    assert len(long_text) > 1, long_text
    assert [f.opcode for f in long_text] == [1] + [0] * (len(long_text) - 1), long_text
    encoded = LONG_TEXT.encode()
    assert sum(f.length for f in long_text) == len(encoded)
    boundaries, offset = [], 0
    for frame in long_text[:-1]:
        offset += frame.length
        boundaries.append(offset)
    # A UTF-8 continuation byte (0b10xxxxxx) right after a boundary: a character was split.
    assert any(encoded[b] & 0xC0 == 0x80 for b in boundaries), boundaries


# ---------------------------------------------------------------------------------------------
# The upgrade request as Chromium sends it; extensions
# ---------------------------------------------------------------------------------------------


def test_chromium_upgrade_request(
    page: Any, site: TestSite, subprotocol_server: ServerProcess
) -> None:
    """Chromium's own upgrade request (header case, extension offer, Origin, subprotocols), as
    recorded on the wire, is accepted by fastws as is, live and replayed on a new connection;
    its WebSocket fields still match the recording in recorded.py."""
    with RecordingProxy(subprotocol_server.port) as proxy:
        url = proxy.url_for("/chat?room=lobby")
        report = run(page, "page", "handshake", url, ["chat", "superchat"], True)
    check_subprotocol(report, "chat")
    sent = only_connection(proxy).request_head
    request_line, fields = header_fields(sent)
    assert request_line == "GET /chat?room=lobby HTTP/1.1"
    live = {name: value for name, value in fields if name in WEBSOCKET_FIELDS}
    assert sorted(live) == sorted(WEBSOCKET_FIELDS), f"fields or their case changed: {fields}"
    assert live["Origin"] == site.origin
    assert live["Host"] == f"127.0.0.1:{proxy.port}"
    recorded = dict(header_fields(CHROMIUM_156_UPGRADE)[1])
    for name in ("Connection", "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol"):
        assert live[name] == recorded[name], (name, fields)
    assert live["Sec-WebSocket-Extensions"] == "permessage-deflate; client_max_window_bits"
    # The same bytes on a fresh connection (a key may be reused: the server keeps no state).
    with WireClient(subprotocol_server.port) as wire:
        wire.send_raw(sent)
        response = wire.read_http_response()
    assert response.status == 101, response
    assert response.headers["sec-websocket-accept"] == accept_key(live["Sec-WebSocket-Key"])


def test_permessage_deflate_with_chromium(page: Any, start_server: ServerFactory) -> None:
    """With compression on, Chromium's permessage-deflate offer is accepted: ws.extensions
    shows permessage-deflate, RSV1 is set on the first frame of a compressed message only, and
    messages of every size still round-trip exactly."""
    server = start_server(max_message_size="8MiB", **COMPRESSION_ON)
    with RecordingProxy(server.port) as proxy:
        binary = run(page, "page", "binaryRoundTrips", proxy.url_for("/"), DRIVER_SIZES)
        text = run(page, "page", "textRoundTrips", proxy.url_for("/"))
    check_binary(binary, DRIVER_SIZES)
    check_text(text)
    assert binary["extensions"].startswith("permessage-deflate"), binary
    # The large-message path with compression: 1 MiB of random bytes stays ~1 MiB compressed,
    # so Chromium fragments it, RSV1 on the first frame only (RFC 7692 6.1); fastws reassembles
    # and inflates it. (1 MiB of repeated text deflates to ~2 KiB: one frame.)
    large_binary = messages(proxy.connections[0].client_frames)[-1]
    assert len(large_binary) > 1, large_binary
    assert large_binary[0].rsv1, large_binary
    assert not any(frame.rsv1 for frame in large_binary[1:]), large_binary
    long_text = messages(proxy.connections[1].client_frames)[-1]
    assert long_text[0].rsv1, long_text
