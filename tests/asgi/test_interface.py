"""What APP is (fastws/server/app.py): a fastws handler, a callback-style Listener or an ASGI
3 application, told apart by its parameters, or forced with --interface."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fastws.apps.echo import Echo
from fastws.handler import HandlerError
from fastws.server.app import detect
from tests.asgi import apps
from tests.asgi.conftest import http_base


async def handler(ws: Any) -> None:
    pass


async def two(ws: Any, path: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (handler, "fastws"),
        (Echo, "fastws"),  # a Listener class
        (Echo(), "fastws"),
        (apps.starlette_app, "asgi"),
        (apps.fastapi_app, "asgi"),
        (apps.no_lifespan_app, "asgi"),
    ],
)
def test_detect(app: Any, interface: str) -> None:
    """One parameter (or a Listener): fastws; (scope, receive, send): ASGI."""
    assert detect(app) == interface


def test_a_handler_of_neither_shape_is_refused_in_one_line() -> None:
    """Two parameters (the old websockets handler(ws, path)) is neither: HandlerError saying
    what each interface takes."""
    with pytest.raises(HandlerError, match=r"takes 2 parameters: a handler takes one"):
        detect(two)
    with pytest.raises(HandlerError, match="not callable"):
        detect(42)


def test_interface_option_forces_asgi(start_server: Any) -> None:
    """An ASGI app whose signature does not say so (``*args``) is taken for a fastws handler
    by default (a plain GET gets 400); --interface asgi serves it as ASGI."""
    guessed = start_server("tests.asgi.apps:forced_app")
    assert httpx.get(http_base(guessed) + "/").status_code == 400
    forced = start_server("tests.asgi.apps:forced_app", interface="asgi")
    assert httpx.get(http_base(forced) + "/").text == "bare"
