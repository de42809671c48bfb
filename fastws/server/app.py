"""What the application is, and what the server needs of it whatever it is.

`fastws serve APP` names a callable; `detect` tells from its parameters which interface it
speaks, and `adapt` wraps it in an `Application`, the one shape `Server` knows:

- ``fastws``: ``async def handler(ws)``, called with each WebSocket connection once it is
  open, or a callback-style `fastws.Listener` (a class or object with ``on_message``).
  Plain HTTP requests get the registered routes (/healthz, /metrics) or 400.
- ``asgi``: an ASGI 3 application (``async def app(scope, receive, send)``, e.g. FastAPI or
  Starlette): every HTTP request and every WebSocket on the port, its lifespan once per
  worker (see `fastws.asgi`).

A new interface is one more name in `INTERFACES`, a branch in `detect` and an `Application`
from `adapt`: nothing else in the server changes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..listener import Listener, as_listener
from .protocol import ServerProtocol

if TYPE_CHECKING:
    from .server import Server

__all__ = ["INTERFACES", "Application", "InterfaceError", "adapt", "detect"]

#: The interfaces `--interface` accepts besides "auto".
INTERFACES = ("fastws", "asgi")


class InterfaceError(TypeError):
    """APP is none of the interfaces, or not the one it was said to be (one line)."""


class Application:
    """The application as the server sees it: a native fastws handler.

    `handler(ws)` runs each WebSocket connection the application owns, unless `listener` (a
    callback-style handler, see fastws.listener) gets their events instead. `front(server)` is
    the protocol of a new connection. `defers_accept`: the handler itself completes or
    refuses the opening handshake (`ws.accept()` / `ws.deny()`), as ASGI's does.
    """

    interface = "fastws"
    defers_accept = False

    def __init__(self, handler: Any) -> None:
        self.handler: Callable[[ServerProtocol], Awaitable[None]] = handler
        self.listener: Listener | None = as_listener(handler)

    def front(self, server: Server) -> asyncio.BaseProtocol:
        """A new connection starts with the WebSocket handshake parser."""
        return ServerProtocol(server)

    async def startup(self, server: Server) -> None:
        """Before the server accepts its first connection (in each worker)."""

    async def shutdown(self, server: Server) -> None:
        """After the server has closed its connections (in each worker)."""


def _positional(app: Any) -> int | None:
    """How many positional arguments `app` takes (None: any number, or unknown)."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if positional and parameter.default is parameter.empty:
            count += 1
    return count


def _is_listener(app: Any) -> bool:
    """A callback-style handler (as listener.as_listener takes it, without instantiating)."""
    if isinstance(app, Listener):
        return True
    on_message = getattr(app, "on_message", None)
    return on_message is not None and not inspect.iscoroutinefunction(on_message)


def detect(app: Any) -> str:
    """The interface `app` speaks, from its parameters: one (ws) is a fastws handler, three
    (scope, receive, send) an ASGI 3 application. Raises InterfaceError otherwise."""
    if _is_listener(app):
        return "fastws"
    if not callable(app):
        raise InterfaceError(f"is not callable (it is of type {type(app).__name__})")
    count = _positional(app)
    if count == 1 or count is None:  # None: `*args`, or a callable without a signature
        return "fastws"
    if count == 3:
        return "asgi"
    raise InterfaceError(
        "is neither a fastws handler (async def handler(ws)) nor an ASGI 3 application"
        " (async def app(scope, receive, send)); --interface says which it is"
    )


def adapt(app: Any, interface: str = "auto") -> Application:
    """Wrap `app` for the server, detecting its interface unless one is given."""
    if interface == "auto":
        interface = detect(app)
    if interface == "asgi":
        from ..asgi.app import ASGIApplication

        return ASGIApplication(app)
    if interface == "fastws":
        return Application(app)
    raise InterfaceError(f"unknown interface {interface!r} (one of {', '.join(INTERFACES)})")
