"""WebKit (WebKitGTK's MiniBrowser, the Safari engine) against real fastws server processes.

Driven by WebKitWebDriver through Selenium on a private Xvfb display (conftest's ``webkit``).
The page and its Web Worker run the same static/wsclient.mjs functions as Chromium's and
Firefox's, checked by the same checks.py; the WebDriver does not copy frames (unlike
Playwright's DevTools session), so the 64 MiB messages run here in the page and the Worker.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from tests.apps import FAILURE_MARKER
from tests.browser.checks import (
    SIZES,
    check_binary,
    check_clean_close,
    check_rejected,
    check_subprotocol,
    check_suite,
    check_text,
)
from tests.browser.proxy import RecordingProxy, messages, response_field

if TYPE_CHECKING:
    from tests.browser.conftest import WebKitPage
    from tests.browser.site import TestSite
    from tests.conftest import ServerFactory, ServerProcess

WHERE = ["page", "worker"]


@pytest.mark.parametrize("where", WHERE)
def test_suite(
    webkit_page: WebKitPage,
    suite_urls: dict[str, str],
    close_log_server: ServerProcess,
    where: str,
) -> None:
    """In the page and in a Web Worker: subprotocol ["chat", "superchat"] -> "chat"; byte-exact
    ArrayBuffers of 0 B to 64 MiB; non-ASCII text up to 1 MiB; Blobs (as ArrayBuffer and as
    Blob); close(4000, "bye") reaches the handler and the CloseEvent is clean; a server whose
    Origin allow-list excludes the page refuses it (error, 1006); with a deflate server,
    ws.extensions shows permessage-deflate and messages still round-trip."""
    report = webkit_page.run(where, "suite", suite_urls, SIZES)
    print("ms per part:", report.get("ms"))
    check_suite(report)
    close_log_server.wait_for_log("client closed: 4000 'bye'")
    agent = webkit_page.evaluate("return navigator.userAgent;")
    assert "AppleWebKit/" in agent and "Safari/" in agent and "Chrome" not in agent, agent


def test_subprotocol_choice(
    webkit_page: WebKitPage, superchat_first: ServerProcess, no_common_subprotocol: ServerProcess
) -> None:
    """The server's preference among the offered subprotocols wins (Worker: "superchat"). A
    server that supports none of them upgrades without one (RFC 6455 4.2.2): fastws never
    picks a protocol the page did not offer. The WHATWG spec then has the browser fail the
    connection, as Chromium does; WebKitGTK 2.50 opens it with ws.protocol "" instead (Safari's
    long-standing behaviour), so both outcomes are accepted, with nothing negotiated."""
    offer = ["chat", "superchat"]
    report = webkit_page.run("worker", "handshake", superchat_first.url, offer, True)
    check_subprotocol(report, "superchat")
    report = webkit_page.run("page", "handshake", no_common_subprotocol.url, offer, True)
    if report["opened"]:
        check_subprotocol(report, "")  # the handler saw no subprotocol either
    else:
        check_rejected(report)
    report = webkit_page.run("page", "handshake", no_common_subprotocol.url, None, True)
    check_subprotocol(report, "")


def test_server_close_codes(
    webkit_page: WebKitPage,
    closes_4000: ServerProcess,
    raises: ServerProcess,
    start_server: ServerFactory,
) -> None:
    """Close codes the server sends reach WebKit's CloseEvent, clean: the handler's
    close(4000, "bye"); 1011 without detail when the handler raises; 1001 when the server is
    stopped (SIGTERM), after which it exits 0."""
    close = webkit_page.evaluate(
        "const client = await window.wsTests.connect(args[0]); return await client.closed;",
        closes_4000.url,
    )
    check_clean_close(close, 4000, "bye")
    close = webkit_page.evaluate(
        """const client = await window.wsTests.connect(args[0]);
        client.ws.send("raise");
        return await client.closed;""",
        raises.url,
    )
    check_clean_close(close, 1011, "")
    raises.wait_for_log(FAILURE_MARKER)
    server = start_server()
    webkit_page.evaluate("window.held = await window.wsTests.connect(args[0]);", server.url)
    server.signal(signal.SIGTERM)
    close = webkit_page.evaluate("return await window.held.closed;")
    assert close["code"] == 1001 and close["wasClean"] is True, close
    assert server.proc.wait(10) == 0, server.stderr()


@pytest.mark.parametrize("where", WHERE)
def test_origin_allowed(
    webkit_page: WebKitPage, site: TestSite, page_origin_allowed: ServerProcess, where: str
) -> None:
    """The page's origin (also a Worker's) is what WebKit sends as Origin: a server allowing it
    lets the connection open (the suite checks that one allowing only another refuses it)."""
    report = webkit_page.run(where, "handshake", page_origin_allowed.url)
    assert report["opened"] is True, report
    check_clean_close(report["close"], 1000)


def test_permessage_deflate_on_the_wire(
    webkit_page: WebKitPage, start_server: ServerFactory
) -> None:
    """WebKit's permessage-deflate offer is accepted: ws.extensions is exactly what fastws
    answered, WebKit really compresses (RSV1 on the first frame of a message, never on a
    continuation: RFC 7692 6.1), and binary and text messages still round-trip."""
    sizes = [0, 125, 64 << 10, 1 << 20]
    server = start_server(max_message_size="8MiB", compression="deflate")
    with RecordingProxy(server.port) as proxy:
        binary = webkit_page.run("page", "binaryRoundTrips", proxy.url_for("/"), sizes)
        text = webkit_page.run("page", "textRoundTrips", proxy.url_for("/"))
    check_binary(binary, sizes)
    check_text(text)
    binary_conn, text_conn = proxy.connections
    assert binary_conn.done.wait(5) and text_conn.done.wait(5), "proxied connections still open"
    answered = response_field(binary_conn.response_head, "sec-websocket-extensions")
    assert answered.startswith("permessage-deflate"), binary_conn.response_head
    assert binary["extensions"] == answered, (binary["extensions"], answered)
    for conn in (binary_conn, text_conn):
        for message in messages(conn.client_frames):
            assert not any(frame.rsv1 for frame in message[1:]), message
    long_text = messages(text_conn.client_frames)[-1]
    assert long_text[0].rsv1, long_text  # 1 MiB of repeated text: WebKit compressed it
    assert sum(frame.length for frame in long_text) < (1 << 20), long_text
