"""fastws.handler: a handler that cannot work is refused when the server starts, in one line,
instead of starting and then failing every connection with 1011 (issue 18 item 3).

The forms that do work are accepted unchanged; tests/test_cli.py shows what a user of
`fastws serve` sees (one line, exit status 2).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

import fastws
from fastws.apps.echo import Echo, echo
from fastws.handler import HandlerError, check


async def handler(ws: Any) -> None:
    pass


async def two(ws: Any, extra: Any) -> None:
    pass


async def with_default(ws: Any, extra: int = 1) -> None:
    pass


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    pass


def plain(ws: Any) -> None:
    pass


class AsyncCallable:
    async def __call__(self, ws: Any) -> None:
        pass


class Methods:
    async def serve(self, ws: Any) -> None:
        pass


class Starlette:
    """An ASGI application object, as Starlette's, FastAPI's and Django's are."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("app", "kind"),
    [
        (handler, "coroutine"),
        (echo, "coroutine"),
        (with_default, "coroutine"),
        (AsyncCallable(), "coroutine"),
        (Methods().serve, "coroutine"),
        (functools.partial(two, extra=1), "coroutine"),
        (Echo, "listener"),
        (Echo(), "listener"),
        (asgi_app, "asgi"),
        (Starlette(), "asgi"),
    ],
    ids=[
        "async-def",
        "echo",
        "default-arg",
        "async-call",
        "method",
        "partial",
        "class",
        "obj",
        "asgi-function",
        "asgi-object",
    ],
)
def test_the_forms_a_server_serves_are_accepted(app: Any, kind: str) -> None:
    assert check(app) == kind


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (plain, "tests.test_handler:plain is not an async function"),
        (lambda ws: None, "is not an async function"),
        (two, "tests.test_handler:two takes 2 parameters: a handler takes one"),
        (AsyncCallable, "is a class"),
        (42, "is not callable"),
    ],
    ids=["plain", "lambda", "two-params", "class", "int"],
)
def test_a_handler_that_cannot_work_is_refused_with_one_line(app: Any, message: str) -> None:
    """Each mistake gets one line that names the handler and says what a handler is."""
    with pytest.raises(HandlerError) as info:
        check(app)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_serve_and_run_refuse_it_before_listening() -> None:
    """`fastws.serve(plain)` and `fastws.run(plain)` raise at once (a TypeError), before a
    socket is opened or a worker forked."""
    with pytest.raises(TypeError, match="not an async function"):
        fastws.serve(plain, port=0)
    with pytest.raises(TypeError, match="takes 2 parameters"):
        fastws.run(two, port=0, workers=2)
