"""WebKit (WebKitGTK's MiniBrowser, the Safari engine) against real fastws server processes.

Driven by WebKitWebDriver through Selenium on a private Xvfb display (conftest's ``webkit``).
It runs every test of test_driven.py; here, the whole static/wsclient.mjs suite (as Firefox
and Node run it, checked by the same checks.py) with 64 MiB messages in the page and the
Worker (the WebDriver copies no frames, unlike Playwright's DevTools session), and what is
WebKit's own: its answer to a missing subprotocol, its compression on the wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser.checks import (
    SIZES,
    check_binary,
    check_rejected,
    check_subprotocol,
    check_suite,
    check_text,
)
from tests.browser.proxy import RecordingProxy, messages, response_field

if TYPE_CHECKING:
    from tests.browser.conftest import WebKitPage
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


def test_no_common_subprotocol(
    webkit_page: WebKitPage, no_common_subprotocol: ServerProcess
) -> None:
    """A server that supports none of the offered subprotocols upgrades without one (RFC 6455
    4.2.2): fastws never picks a protocol the page did not offer. The WHATWG spec then has the
    browser fail the connection, as Chromium does (test_chromium.py); WebKitGTK 2.50 opens it
    with ws.protocol "" instead (Safari's long-standing behaviour), so both outcomes are
    accepted, with nothing negotiated."""
    offer = ["chat", "superchat"]
    report = webkit_page.run("page", "handshake", no_common_subprotocol.url, offer, True)
    if report["opened"]:
        check_subprotocol(report, "")  # the handler saw no subprotocol either
    else:
        check_rejected(report)
    report = webkit_page.run("page", "handshake", no_common_subprotocol.url, None, True)
    check_subprotocol(report, "")


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
