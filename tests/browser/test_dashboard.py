"""The --dashboard page in Chromium: it renders the server's real figures, they move while a
load runs, and once the load stops every figure shown equals /metrics. A screenshot is saved
(FASTWS_TEST_ARTIFACTS, default the temporary directory) for people to look at; nothing is
compared pixel by pixel."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.process.helpers import metrics, workers

ARTIFACTS = Path(os.environ.get("FASTWS_TEST_ARTIFACTS") or tempfile.gettempdir())
SHOWN = ("connections_open", "handshakes", "messages_in", "messages_out", "bytes_in", "bytes_out")
# Every figure element of the page carries data-k: where its value is in the snapshot.
READ_FIGURES = (
    "() => Object.fromEntries([...document.querySelectorAll('[data-k]')]"
    ".map((e) => [e.dataset.k, e.textContent]))"
)


def number(text: str) -> float | None:
    """A figure as the page formats it ("12,345.6"; an en dash when there is none yet)."""
    return None if text == "\u2013" else float(text.replace(",", ""))


class Load:
    """Clients echoing 1 KiB messages as fast as the server answers, in threads."""

    def __init__(self, url: str, connections: int, stack: contextlib.ExitStack) -> None:
        self.clients = [stack.enter_context(connect(url)) for _ in range(connections)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._echo, args=(ws,), daemon=True) for ws in self.clients
        ]
        for thread in self._threads:
            thread.start()

    def _echo(self, ws: Any) -> None:
        payload = os.urandom(1024)
        while not self._stop.is_set():
            ws.send(payload)
            assert ws.recv() == payload

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def dashboard_page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.console_messages = []
    page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.console_messages.append(f"page error: {e}"))
    try:
        yield page
    finally:
        context.close()


def test_dashboard_shows_live_figures_equal_to_metrics(
    start_server: Any, dashboard_page: Any
) -> None:
    """Chromium renders real numbers for every worker and the total; messages/s is positive
    and the message count grows while clients send; after they stop, every count, gauge and
    close code on the page equals GET /metrics, and the rates fall to zero."""
    server = start_server(workers=2, dashboard=True)
    pids = workers(server, 2)
    page = dashboard_page
    page.goto(f"http://{server.host}:{server.port}/dashboard")
    page.wait_for_function("() => window.dashboard.updates >= 1")
    assert page.text_content("#status") == "live"

    stack = contextlib.ExitStack()
    load = Load(server.url, 4, stack)
    try:
        page.wait_for_function(
            "() => parseFloat(document.querySelector('[data-k=\"total.rates.messages_in\"]')"
            ".textContent.replace(/,/g, '')) > 0"
        )
        first = number(page.evaluate(READ_FIGURES)["total.counters.messages_in"])
        seen = page.evaluate("() => window.dashboard.updates")
        page.wait_for_function(f"() => window.dashboard.updates > {seen}")
        moving = page.evaluate(READ_FIGURES)
        screenshot = ARTIFACTS / "fastws-dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        load.stop()
    assert first is not None and number(moving["total.counters.messages_in"]) > first
    for pid in pids:
        assert number(moving[f"w.{pid}.rss"]) > 0
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"dashboard screenshot: {screenshot}")

    load.clients[0].close(4000, "done")
    load.clients[1].close()
    deadline = time.monotonic() + 15
    while True:
        shown, expected = figures_shown(page.evaluate(READ_FIGURES)), figures_expected(server)
        rates = [number(page.text_content(f'[data-k="total.rates.{n}"]')) for n in ("messages_in",)]
        if shown == expected and rates == [0.0]:
            break
        assert time.monotonic() < deadline, f"page {shown} != /metrics {expected}"
        time.sleep(0.3)
    stack.close()

    assert shown[("total", "connections_open")] == 2
    assert shown[("total", "handshakes")] == 4
    assert shown[("total", "close other")] == 1 and shown[("total", "close 1000")] == 1
    assert {who for who, _ in shown} == {*map(str, pids), "total"}
    blocked = [m for m in page.console_messages if "Content Security Policy" in m or "error" in m]
    assert not blocked, blocked


def figures_shown(texts: dict[str, str]) -> dict[tuple[str, str], int]:
    """{(worker pid or "total", counter or "close CODE"): value} as the page shows them."""
    shown = {}
    for key, text in texts.items():
        match = re.fullmatch(r"(?:w\.(\d+)|(total))\.(counters|closes)\.(\w+)", key)
        if not match:
            continue
        who, part, name = match[1] or match[2], match[3], match[4]
        value = number(text)
        if part == "closes" and value:
            shown[(who, f"close {name}")] = int(value)
        elif part == "counters" and name in SHOWN and value is not None:
            shown[(who, name)] = int(value)
    return shown


def figures_expected(server: Any) -> dict[tuple[str, str], int]:
    """The same figures from GET /metrics, whose series are per worker slot (worker="0"..;
    fastws_worker_info names each slot's pid, which the page shows) with no total beside
    them: the page's total is their sum."""
    samples = metrics(server)
    pid_of = {
        dict(labels)["worker"]: dict(labels)["pid"]
        for name, labels in samples
        if name == "fastws_worker_info"
    }
    expected: dict[tuple[str, str], int] = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "fastws_closes_total":
            if not value:
                continue
            figure = f"close {label['code']}"
        else:
            figure = re.sub(r"^fastws_|_total$", "", name)
            if figure not in SHOWN:
                continue
        who = pid_of[label["worker"]]
        expected[(who, figure)] = expected.get((who, figure), 0) + int(value)
        expected[("total", figure)] = expected.get(("total", figure), 0) + int(value)
    return expected
