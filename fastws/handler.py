"""What a server can call with each connection, checked once when it starts.

A handler that cannot work (a plain function, a coroutine function that takes the wrong
parameters, something that is not callable) would otherwise start fine and then fail every
connection with 1011. `check()` refuses it up front with one line that says what is wrong;
`fastws.run()`, `fastws serve`, `fastws.serve()` and a worker re-importing the application on
a HUP reload call it.

The forms a server serves:

- a coroutine handler, `async def handler(ws)` (a bound method, a `functools.partial`, or an
  object whose `__call__` is `async def __call__(self, ws)`, too);
- a callback-style `fastws.Listener` (an instance, or a class to instantiate; see
  `fastws.listener`);
- a table of paths to handlers of the two forms above, mixed: ``{"/chat": chat, "/feed":
  Feed}``;
- an ASGI 3 application (`is_asgi_app`), served through `fastws.asgi`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["HandlerError", "check", "is_asgi_app"]

Kind = Literal["coroutine", "listener", "table", "asgi"]


class HandlerError(TypeError):
    """The handler cannot serve a connection; the message says why, in one line."""


def is_asgi_app(app: Any) -> bool:
    """Whether `app` is an ASGI 3 application (served through fastws.asgi): a coroutine
    callable, or an object with an ``async def __call__``, whose required positional
    parameters are (scope, receive, send) — a FastAPI or Starlette instance, say."""
    if isinstance(app, type) or not callable(app) or as_listener_like(app):
        return False
    call = app
    if not (inspect.isfunction(app) or inspect.ismethod(app) or _is_partial(app)):
        call = app.__call__
    if not inspect.iscoroutinefunction(_unwrap(call)):
        return False
    try:
        parameters = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) == 3


def as_listener_like(app: Any) -> bool:
    """A callback-style handler, told without instantiating it (see listener.as_listener)."""
    on_message = getattr(app, "on_message", None)
    return on_message is not None and not inspect.iscoroutinefunction(on_message)


def check(app: Any) -> Kind:
    """The kind of handler `app` is; raises HandlerError if it cannot serve connections."""
    if isinstance(app, Mapping):  # {"/chat": chat, ...}: each path's handler
        for path, each in app.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise HandlerError(f"path {path!r} of the handler table must start with '/'")
            try:
                kind = check(each)
            except HandlerError as exc:
                raise HandlerError(f"the handler for {path!r}: {exc}") from None
            if kind == "asgi":
                raise HandlerError(
                    f"the handler for {path!r} must be `async def handler(ws)` or a"
                    " fastws.Listener (an ASGI application serves every path itself)"
                )
        return "table"
    if is_asgi_app(app):
        return "asgi"
    if as_listener_like(app):  # told without instantiating a class
        return "listener"
    if not callable(app):
        raise HandlerError(f"{_name(app)} is not callable (it is of type {type(app).__name__})")
    call = app
    if not (inspect.isfunction(app) or inspect.ismethod(app) or _is_partial(app)):
        if isinstance(app, type):
            raise HandlerError(
                f"{_name(app)} is a class: a handler is `async def handler(ws)` or a "
                "fastws.Listener (a class with an on_message method)"
            )
        call = app.__call__  # an object with __call__: that bound method is what runs
    if not inspect.iscoroutinefunction(_unwrap(call)):
        raise HandlerError(
            f"{_name(app)} is not an async function: a handler is `async def handler(ws)`"
            " (or a fastws.Listener)"
        )
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):  # no signature to read (a builtin): let it run
        return "coroutine"
    try:
        signature.bind(None)
    except TypeError:
        params = [
            p
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        hint = ""
        if len(params) == 3:  # (scope, receive, send)
            hint = " (an ASGI application's are `async (scope, receive, send)`)"
        raise HandlerError(
            f"{_name(app)} takes {len(params)} parameters: a handler takes one, the "
            f"connection (`async def handler(ws)`){hint}"
        ) from None
    return "coroutine"


def _is_partial(app: Any) -> bool:
    return isinstance(app, functools.partial)


def _unwrap(call: Any) -> Any:
    """The function a partial (or a chain of them) ends in."""
    while _is_partial(call):
        call = call.func
    return call


def _name(app: Any) -> str:
    name = getattr(app, "__qualname__", None) or getattr(app, "__name__", None)
    if name is None:
        return f"the {type(app).__name__} object"
    module = getattr(app, "__module__", None)
    return f"{module}:{name}" if module else str(name)
