"""The same tests in Chromium (Playwright) and WebKit (Selenium + WebKitWebDriver), each
against real fastws server processes.

The page and its Web Worker use only the standard WebSocket API (static/wsclient.mjs), as the
pages of fastws' users do; conftest's ``driven`` runs each test once per browser. What only
one browser does (how Chromium frames and offers, what WebKit accepts) is in test_chromium.py
and test_webkit.py.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from fastws.config import Config
from tests.apps import FAILURE_MARKER
from tests.browser.checks import (
    DRIVER_SIZES,
    MiB,
    check_binary,
    check_blob,
    check_clean_close,
    check_client_close,
    check_rejected,
    check_subprotocol,
    check_text,
)
from tests.browser.proxy import RecordingProxy, response_field

if TYPE_CHECKING:
    from tests.browser.conftest import DrivenPage
    from tests.conftest import ServerFactory, ServerProcess

WHERE = ["page", "worker"]


# ---------------------------------------------------------------------------------------------
# Subprotocols
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_subprotocol(
    driven: DrivenPage,
    subprotocol_server: ServerProcess,
    superchat_first: ServerProcess,
    where: str,
) -> None:
    """new WebSocket(url, ["chat", "superchat"]): ws.protocol is the server's preferred one
    among those the page offered, and the handler sees the same."""
    offer = ["chat", "superchat"]
    check_subprotocol(driven.run(where, "handshake", subprotocol_server.url, offer, True), "chat")
    report = driven.run(where, "handshake", superchat_first.url, offer, True)
    check_subprotocol(report, "superchat")


# ---------------------------------------------------------------------------------------------
# Messages: binary (ArrayBuffer), text, Blob — in the page and in a Web Worker
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_binary_round_trips(driven: DrivenPage, echo: ServerProcess, where: str) -> None:
    """binaryType "arraybuffer": ArrayBuffers of 0 B, 125 B, 64 KiB and 1 MiB come back
    byte-exact (64 MiB: test_postback.py and test_webkit.py's suite)."""
    report = driven.run(where, "binaryRoundTrips", echo.url, DRIVER_SIZES)
    check_binary(report, DRIVER_SIZES)


@pytest.mark.parametrize("where", WHERE)
def test_text_round_trips(driven: DrivenPage, echo: ServerProcess, where: str) -> None:
    """Text with 2-, 3- and 4-byte UTF-8 characters (astral ones are surrogate pairs in JS)
    comes back as the same string, including 1 MiB of it."""
    check_text(driven.run(where, "textRoundTrips", echo.url))


@pytest.mark.parametrize("where", WHERE)
def test_blob_round_trip(driven: DrivenPage, echo: ServerProcess, where: str) -> None:
    """ws.send(blob) sends the Blob's bytes as a binary message; the echo comes back as an
    ArrayBuffer or a Blob, per binaryType."""
    check_blob(driven.run(where, "blobRoundTrips", echo.url))


# ---------------------------------------------------------------------------------------------
# Closing handshake
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_client_close_code_and_reason_reach_the_handler(
    driven: DrivenPage, close_log_server: ServerProcess, where: str
) -> None:
    """ws.close(4000, "bye"): the server's handler sees code 4000 and reason "bye", answers
    with a Close frame, and the page's CloseEvent is clean with code 4000."""
    check_client_close(driven.run(where, "closeWith", close_log_server.url, 4000, "bye"))
    close_log_server.wait_for_log("client closed: 4000 'bye'")


def test_server_close_code_and_reason(driven: DrivenPage, closes_4000: ServerProcess) -> None:
    """The handler's close(4000, "bye") reaches the page as a clean CloseEvent 4000 "bye"."""
    close = driven.evaluate(
        "const client = await window.wsTests.connect(args[0]); return await client.closed;",
        closes_4000.url,
    )
    check_clean_close(close, 4000, "bye")


def test_server_going_away_close(driven: DrivenPage, start_server: ServerFactory) -> None:
    """A server stopping (SIGTERM) closes with 1001: the page gets CloseEvent.code 1001 and
    wasClean true, and the server exits 0 once the closing handshake is done."""
    server = start_server()
    driven.evaluate("window.held = await window.wsTests.connect(args[0]);", server.url)
    server.signal(signal.SIGTERM)
    close = driven.evaluate("return await window.held.closed;")
    assert close["code"] == 1001, close
    assert close["wasClean"] is True, close
    assert server.proc.wait(10) == 0, server.stderr()


def test_handler_exception_closes_1011(driven: DrivenPage, raises: ServerProcess) -> None:
    """A handler that raises closes the connection with 1011 (internal error): the page gets a
    clean CloseEvent with that code, and nothing of the exception in the reason."""
    close = driven.evaluate(
        """const client = await window.wsTests.connect(args[0]);
        client.ws.send("raise");
        return await client.closed;""",
        raises.url,
    )
    check_clean_close(close, 1011, "")
    raises.wait_for_log(FAILURE_MARKER)


# ---------------------------------------------------------------------------------------------
# Refused handshakes: Origin allow-list, process_request hook
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_required(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(process_request="tests.apps:deny_unless_token")


@pytest.mark.parametrize("where", WHERE)
def test_origin_allow_list(
    driven: DrivenPage,
    other_origin_only: ServerProcess,
    page_origin_allowed: ServerProcess,
    where: str,
) -> None:
    """The page's origin (also a Worker's) is sent as Origin: a server allowing only another
    origin refuses it with 403 and the browser fails the connection; allowing the page's
    origin lets it open."""
    check_rejected(driven.run(where, "handshake", other_origin_only.url))
    other_origin_only.wait_for_log("origin not allowed")
    report = driven.run(where, "handshake", page_origin_allowed.url)
    assert report["opened"] is True, report
    check_clean_close(report["close"], 1000)


@pytest.mark.parametrize("where", WHERE)
def test_process_request_hook_refusal(
    driven: DrivenPage, token_required: ServerProcess, where: str
) -> None:
    """A process_request hook answering 403 makes the browser fail the connection; the same
    hook letting the request through (token=ok) lets it open."""
    check_rejected(driven.run(where, "handshake", token_required.url))
    token_required.wait_for_log("403 from process_request")
    report = driven.run(where, "handshake", token_required.url_for("/?token=ok"))
    assert report["opened"] is True, report
    check_clean_close(report["close"], 1000)


# ---------------------------------------------------------------------------------------------
# Backpressure
# ---------------------------------------------------------------------------------------------


def test_buffered_amount_drains_after_backpressure(
    driven: DrivenPage, start_server: ServerFactory
) -> None:
    """While the handler reads nothing, the server stops reading (max_queue=1) and Chromium's
    bufferedAmount stops moving above 0; once the handler reads again it drains to 0 and the
    server got every byte. WebKit's bufferedAmount only counts what its network process has
    not taken yet, and that process buffers without bound: the page never sees the stall (it
    sends its whole 64 MiB), but the server still gets every byte once it reads again."""
    # The app's hold and release connections must meet in one process.
    one_worker = {"workers": 1} if "workers" in Config.__dataclass_fields__ else {}
    server = start_server("tests.apps:hold_until_released", max_queue=1, **one_worker)
    hold, release = server.url_for("/hold/k"), server.url_for("/release/k")
    # Loopback buffers and the server absorb ~7 MiB here before Chromium's page stalls; the
    # page sends more as long as they take it, up to the limit.
    limit = 256 * MiB if driven.name == "chromium" else 64 * MiB
    report = driven.run("page", "backpressure", hold, release, MiB, limit)
    if driven.name == "chromium":
        assert report["stalled"] is not None and report["stalled"] > 0, report
    assert report["drained"] == 0, report
    assert report["reply"] == {"messages": report["messages"], "bytes": report["sent"]}, report
    check_clean_close(report["close"], 1000)


# ---------------------------------------------------------------------------------------------
# Keepalive, request target, extensions
# ---------------------------------------------------------------------------------------------


def test_browser_pongs_satisfy_keepalive(driven: DrivenPage, start_server: ServerFactory) -> None:
    """fastws' keepalive pings (every 100 ms, 500 ms to answer) are answered by the browser on
    its own: an idle page's connection stays open and usable, then closes cleanly."""
    server = start_server(ping_interval="100ms", ping_timeout="500ms")
    report = driven.evaluate(
        """const client = await window.wsTests.connect(args[0]);
        await new Promise((resolve) => setTimeout(resolve, 1200));
        client.ws.send("still here");
        const echoed = await client.recv();
        return { echoed, close: await client.close(1000) };""",
        server.url,
    )
    assert report["echoed"] == "still here", report
    check_clean_close(report["close"], 1000)
    assert "keepalive" not in server.stderr(), server.stderr()


def test_request_target_as_sent(driven: DrivenPage, start_server: ServerFactory) -> None:
    """A path and query with spaces and non-ASCII characters reach the handler as the browser
    percent-encoded them."""
    server = start_server("tests.apps:report_request")
    report = driven.evaluate(
        """const client = await window.wsTests.connect(args[0]);
        const first = await client.recv();
        await client.close(1000);
        return JSON.parse(first);""",
        server.url_for("/chat/ünïcode ✓?q=a b&x=é"),
    )
    assert report["path"].partition("?")[0] == "/chat/%C3%BCn%C3%AFcode%20%E2%9C%93", report
    assert report["query"] == "q=a%20b&x=%C3%A9", report


def test_extensions_match_server_response(driven: DrivenPage, echo: ServerProcess) -> None:
    """ws.extensions is what the server answered to the browser's permessage-deflate offer:
    "" while the server does not compress by default, otherwise the agreed parameters."""
    with RecordingProxy(echo.port) as proxy:
        report = driven.run("page", "handshake", proxy.url_for("/"))
    [connection] = proxy.connections
    assert connection.done.wait(5), "the proxied connection did not finish"
    response = connection.response_head
    answered = response_field(response, "sec-websocket-extensions")
    assert report["opened"] is True, report
    assert report["extensions"] == answered, (report, response)
    assert b"permessage-deflate" in connection.request_head, connection.request_head
    if Config().compression == "off":
        assert answered == "", response  # compression is off by default: offer left unanswered
