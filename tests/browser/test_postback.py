"""Chromium and Firefox ESR without a driver: the page runs the whole suite and POSTs its report.

Firefox has no WebDriver from these registries, and Chromium under Playwright pays for every
frame's payload in its DevTools session; started bare on static/postback.html, both run the
suite of static/wsclient.mjs in the page and in a Web Worker, 64 MiB messages included, and
send the report back to the test's HTTP server. The browser is ended by PID afterwards.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.browser.checks import DRIVER_SIZES, SIZES, check_suite

if TYPE_CHECKING:
    from tests.browser.site import TestSite
    from tests.conftest import ServerProcess

USER_AGENTS = {"chromium": "HeadlessChrome/", "firefox": "Firefox/"}
RESULT_TIMEOUT = 60.0


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_suite_in_page_and_worker(
    headless: Any,
    site: TestSite,
    suite_urls: dict[str, str],
    close_log_server: ServerProcess,
    browser: str,
) -> None:
    """In the page and in a Web Worker: subprotocol ["chat", "superchat"] -> "chat"; byte-exact
    ArrayBuffers of 0 B to 64 MiB; non-ASCII text up to 1 MiB; Blobs; close(4000, "bye")
    reaches the handler and the CloseEvent is clean; with a deflate server, ws.extensions shows
    permessage-deflate and messages still round-trip."""
    token = secrets.token_hex(8)
    # Firefox's Worker stops at 1 MiB: its 64 MiB round trip costs several seconds and is
    # checked in its page (and in Chromium's page and Worker).
    worker_sizes = SIZES if browser == "chromium" else DRIVER_SIZES
    config = {"token": token, "urls": suite_urls, "sizes": SIZES, "workerSizes": worker_sizes}
    proc = headless(browser, site.url_for("/postback.html?config=" + quote(json.dumps(config))))
    report = site.wait_result(token, RESULT_TIMEOUT, alive=lambda: proc.poll() is None)
    assert "error" not in report, report["error"]
    print("ms per part:", {where: report[where].get("ms") for where in ("page", "worker")})
    assert USER_AGENTS[browser] in report["userAgent"], report["userAgent"]
    check_suite(report["page"])
    assert report["worker"].pop("inWorker", None) is True, report["worker"]
    check_suite(report["worker"], worker_sizes)
    logs = close_log_server.wait_for_log("client closed: 4000 'bye'")
    assert logs.count("client closed: 4000 'bye'") >= 2, logs
