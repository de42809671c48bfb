"""examples/fastapi_chat: the chat of FastAPI's WebSockets tutorial, unmodified, on
`fastws serve ... --workers 2`, in Chromium (the `chromium` fixture of tests/browser); and
its variant on fastws channels, where visitors on different workers hear each other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import launch_chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """This module's own Chromium: Playwright keeps an event loop running while it is open,
    which would break the asyncio.run() of the tests/asgi modules that come after it."""
    yield from launch_chromium()


def messages(page: Any) -> list[str]:
    return [str(text) for text in page.locator("#messages li").all_text_contents()]


def say(page: Any, text: str) -> None:
    page.fill("#messageText", text)
    page.click("button")


def open_chat(chromium: Any, url: str) -> tuple[Any, Any]:
    context = chromium.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.ws && window.ws.readyState === 1")
    return context, page


def test_tutorial_chat_in_chromium(start_server: Any, chromium: Any) -> None:
    """The tutorial's page (HTTP) and its WebSocket (on either worker): a visitor's message
    comes back as the personal answer and as the broadcast."""
    server = start_server("examples.fastapi_chat.main:app", workers=2)
    context, page = open_chat(chromium, f"http://127.0.0.1:{server.port}/")
    try:
        assert page.title() == "Chat"
        say(page, "hello fastws")
        page.wait_for_function("() => document.querySelectorAll('#messages li').length >= 2")
        client_id = page.text_content("#ws-id")
        assert messages(page) == [
            "You wrote: hello fastws",
            f"Client #{client_id} says: hello fastws",
        ]
    finally:
        context.close()


def test_channels_chat_across_workers(start_server: Any, chromium: Any) -> None:
    """Four visitors on a two-worker server: each message reaches all of them, whichever
    worker each one's WebSocket landed on."""
    server = start_server("examples.fastapi_chat.channels:app", workers=2)
    visitors = [open_chat(chromium, f"http://127.0.0.1:{server.port}/") for _ in range(4)]
    try:
        pages = [page for _, page in visitors]
        say(pages[0], "to everyone")
        for page in pages:
            page.wait_for_function(
                "() => [...document.querySelectorAll('#messages li')]"
                ".some((li) => li.textContent.endsWith('says: to everyone'))"
            )
        assert messages(pages[0])[0] == "You wrote: to everyone"
    finally:
        for context, _ in visitors:
            context.close()
