"""Debian's Chromium, driven by Playwright, against real fastws server processes.

The page and its Web Worker use only the standard WebSocket API (static/wsclient.mjs), as the
pages of fastws' users do. Where what matters is on the wire (fragmentation, the upgrade
request, RSV1), a recording proxy (proxy.py) sits between Chromium and the server.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest

from fastws.config import Config
from tests.apps import FAILURE_MARKER
from tests.browser.checks import (
    DRIVER_SIZES,
    LONG_TEXT,
    MiB,
    check_binary,
    check_blob,
    check_clean_close,
    check_client_close,
    check_rejected,
    check_subprotocol,
    check_text,
)
from tests.browser.proxy import ProxiedConnection, RecordingProxy, messages, response_field
from tests.browser.recorded import CHROMIUM_156_UPGRADE, WEBSOCKET_FIELDS, header_fields
from tests.wire import WireClient, accept_key

if TYPE_CHECKING:
    from tests.browser.site import TestSite
    from tests.conftest import ServerFactory, ServerProcess

WHERE = ["page", "worker"]


#: The server options that turn permessage-deflate on (RFC 7692, fastws' `compression` knob).
COMPRESSION_ON = {"compression": "deflate"}


def run(page: Any, where: str, name: str, *args: Any) -> Any:
    """Call wsclient.mjs's `name(*args)` in the page or in a dedicated Web Worker."""
    if where == "page":
        return page.evaluate("([name, args]) => window.wsTests[name](...args)", [name, args])
    reply = page.evaluate("([name, args]) => window.inWorker(name, ...args)", [name, args])
    assert reply["inWorker"] is True, reply
    return reply["result"]


def only_connection(proxy: RecordingProxy) -> ProxiedConnection:
    assert len(proxy.connections) == 1, proxy.connections
    connection = proxy.connections[0]
    assert connection.done.wait(5), "the proxied connection did not finish"
    return connection


# ---------------------------------------------------------------------------------------------
# Subprotocols
# ---------------------------------------------------------------------------------------------


def test_subprotocol(
    page: Any, subprotocol_server: ServerProcess, superchat_first: ServerProcess
) -> None:
    """new WebSocket(url, ["chat", "superchat"]): ws.protocol is the server's preferred one
    among those the page offered, and the handler sees the same."""
    offer = ["chat", "superchat"]
    check_subprotocol(run(page, "page", "handshake", subprotocol_server.url, offer, True), "chat")
    check_subprotocol(run(page, "page", "handshake", superchat_first.url, offer, True), "superchat")


def test_no_common_subprotocol(page: Any, no_common_subprotocol: ServerProcess) -> None:
    """When the server supports none of the offered subprotocols it upgrades without one (RFC
    6455 4.2.2 allows it) and the browser then fails the connection, as the WHATWG WebSocket
    spec requires of a page that asked for subprotocols: the page sees error + 1006."""
    server = no_common_subprotocol
    check_rejected(run(page, "page", "handshake", server.url, ["chat", "superchat"], True))
    check_subprotocol(run(page, "page", "handshake", server.url, None, True), "")


def test_subprotocol_in_worker(page: Any, subprotocol_server: ServerProcess) -> None:
    """The same negotiation from inside a Web Worker."""
    report = run(page, "worker", "handshake", subprotocol_server.url, ["chat", "superchat"], True)
    check_subprotocol(report, "chat")


# ---------------------------------------------------------------------------------------------
# Messages: binary (ArrayBuffer), text, Blob — in the page and in a Web Worker
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_binary_round_trips(page: Any, echo: ServerProcess, where: str) -> None:
    """binaryType "arraybuffer": ArrayBuffers of 0 B, 125 B, 64 KiB and 1 MiB come back
    byte-exact (64 MiB: test_postback.py, without the driver's per-frame overhead)."""
    check_binary(run(page, where, "binaryRoundTrips", echo.url, DRIVER_SIZES), DRIVER_SIZES)


@pytest.mark.parametrize("where", WHERE)
def test_text_round_trips(page: Any, echo: ServerProcess, where: str) -> None:
    """Text with 2-, 3- and 4-byte UTF-8 characters (astral ones are surrogate pairs in JS)
    comes back as the same string, including 1 MiB of it."""
    check_text(run(page, where, "textRoundTrips", echo.url))


@pytest.mark.parametrize("where", WHERE)
def test_blob_round_trip(page: Any, echo: ServerProcess, where: str) -> None:
    """ws.send(blob) sends the Blob's bytes as a binary message; the echo comes back as an
    ArrayBuffer or a Blob, per binaryType."""
    check_blob(run(page, where, "blobRoundTrips", echo.url))


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
# Closing handshake
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_client_close_code_and_reason_reach_the_handler(
    page: Any, close_log_server: ServerProcess, where: str
) -> None:
    """ws.close(4000, "bye"): the server's handler sees code 4000 and reason "bye", answers
    with a Close frame, and the page's CloseEvent is clean with code 4000."""
    check_client_close(run(page, where, "closeWith", close_log_server.url, 4000, "bye"))
    close_log_server.wait_for_log("client closed: 4000 'bye'")


def test_server_going_away_close(page: Any, start_server: ServerFactory) -> None:
    """A server stopping (SIGTERM) closes with 1001: the page gets CloseEvent.code 1001 and
    wasClean true, and the server exits 0 once the closing handshake is done."""
    server = start_server()
    page.evaluate("async (url) => { window.held = await window.wsTests.connect(url); }", server.url)
    server.signal(signal.SIGTERM)
    close = page.evaluate("() => window.held.closed")
    assert close["code"] == 1001, close
    assert close["wasClean"] is True, close
    assert server.proc.wait(10) == 0, server.stderr()


def test_handler_exception_closes_1011(page: Any, start_server: ServerFactory) -> None:
    """A handler that raises closes the connection with 1011 (internal error): the page gets a
    clean CloseEvent with that code, and nothing of the exception in the reason."""
    server = start_server("tests.apps:raise_on_message")
    close = page.evaluate(
        """async (url) => {
            const client = await window.wsTests.connect(url);
            client.ws.send("raise");
            return await client.closed;
        }""",
        server.url,
    )
    check_clean_close(close, 1011, "")
    server.wait_for_log(FAILURE_MARKER)


# ---------------------------------------------------------------------------------------------
# Refused handshakes: Origin allow-list, process_request hook
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_required(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(process_request="tests.apps:deny_unless_token")


@pytest.mark.parametrize("where", WHERE)
def test_origin_allow_list(
    page: Any, other_origin_only: ServerProcess, page_origin_allowed: ServerProcess, where: str
) -> None:
    """The page's origin (also a Worker's) is sent as Origin: a server allowing only another
    origin refuses it with 403 and the browser fails the connection; allowing the page's
    origin lets it open."""
    check_rejected(run(page, where, "handshake", other_origin_only.url))
    other_origin_only.wait_for_log("origin not allowed")
    report = run(page, where, "handshake", page_origin_allowed.url)
    assert report["opened"] is True, report
    check_clean_close(report["close"], 1000)


@pytest.mark.parametrize("where", WHERE)
def test_process_request_hook_refusal(page: Any, token_required: ServerProcess, where: str) -> None:
    """A process_request hook answering 403 makes the browser fail the connection; the same
    hook letting the request through (token=ok) lets it open."""
    check_rejected(run(page, where, "handshake", token_required.url))
    token_required.wait_for_log("403 from process_request")
    report = run(page, where, "handshake", token_required.url_for("/?token=ok"))
    assert report["opened"] is True, report
    check_clean_close(report["close"], 1000)


# ---------------------------------------------------------------------------------------------
# Backpressure
# ---------------------------------------------------------------------------------------------


def test_buffered_amount_drains_after_backpressure(page: Any, start_server: ServerFactory) -> None:
    """While the handler reads nothing, the server stops reading (max_queue=1) and the page's
    bufferedAmount stops moving above 0; once the handler reads again it drains to 0 and the
    server got every byte."""
    # The app's hold and release connections must meet in one process.
    one_worker = {"workers": 1} if "workers" in Config.__dataclass_fields__ else {}
    server = start_server("tests.apps:hold_until_released", max_queue=1, **one_worker)
    hold, release = server.url_for("/hold/k"), server.url_for("/release/k")
    # Loopback buffers and the server absorb ~7 MiB here before the page stalls; the page
    # sends more as long as they take it, up to 256 MiB.
    report = run(page, "page", "backpressure", hold, release, MiB, 256 * MiB)
    assert report["stalled"] is not None and report["stalled"] > 0, report
    assert report["drained"] == 0, report
    assert report["reply"] == {"messages": report["messages"], "bytes": report["sent"]}, report
    check_clean_close(report["close"], 1000)


# ---------------------------------------------------------------------------------------------
# Keepalive, request target
# ---------------------------------------------------------------------------------------------


def test_browser_pongs_satisfy_keepalive(page: Any, start_server: ServerFactory) -> None:
    """fastws' keepalive pings (every 100 ms, 500 ms to answer) are answered by the browser on
    its own: an idle page's connection stays open and usable, then closes cleanly."""
    server = start_server(ping_interval="100ms", ping_timeout="500ms")
    report = page.evaluate(
        """async (url) => {
            const client = await window.wsTests.connect(url);
            await new Promise((resolve) => setTimeout(resolve, 1200));
            client.ws.send("still here");
            const echoed = await client.recv();
            return { echoed, close: await client.close(1000) };
        }""",
        server.url,
    )
    assert report["echoed"] == "still here", report
    check_clean_close(report["close"], 1000)
    assert "keepalive" not in server.stderr(), server.stderr()


def test_request_target_as_sent(page: Any, start_server: ServerFactory) -> None:
    """A path and query with spaces and non-ASCII characters reach the handler as the browser
    percent-encoded them."""
    server = start_server("tests.apps:report_request")
    report = page.evaluate(
        """async (url) => {
            const client = await window.wsTests.connect(url);
            const first = await client.recv();
            await client.close(1000);
            return JSON.parse(first);
        }""",
        server.url_for("/chat/ünïcode ✓?q=a b&x=é"),
    )
    assert report["path"].partition("?")[0] == "/chat/%C3%BCn%C3%AFcode%20%E2%9C%93", report
    assert report["query"] == "q=a%20b&x=%C3%A9", report


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


def test_extensions_match_server_response(page: Any, echo: ServerProcess) -> None:
    """ws.extensions is what the server answered to Chromium's permessage-deflate offer: ""
    while the server does not compress by default, otherwise the agreed parameters."""
    with RecordingProxy(echo.port) as proxy:
        report = run(page, "page", "handshake", proxy.url_for("/"))
    response = only_connection(proxy).response_head
    answered = response_field(response, "sec-websocket-extensions")
    assert report["opened"] is True, report
    assert report["extensions"] == answered, (report, response)
    if Config().compression == "off":
        assert answered == "", response  # compression is off by default: offer left unanswered


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
