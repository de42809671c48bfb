"""What the application is, and what the server needs of it whatever it is.

`fastws serve APP` names a callable; `detect` tells from its parameters which interface it
speaks, and `adapt` wraps it in an `Application`, the one shape `Server` knows:

- ``fastws``: ``async def handler(ws)``, called with each WebSocket connection once it is
  open, or a callback-style `fastws.Listener` (a class or object with ``on_message``).
  Plain HTTP requests get the registered routes (/healthz, /metrics) or 400.
- ``asgi``: an ASGI 3 application (``async def app(scope, receive, send)``, e.g. FastAPI or
  Starlette): every HTTP request and every WebSocket on the port, its lifespan once per
  worker (see `fastws.asgi`).

Which one `APP` is: `fastws.handler.check` (its parameters), unless the interface knob
says. A new interface is one more name in `INTERFACES`, a kind in `handler.check` and an
`Application` from `adapt`: nothing else in the server changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..handler import check
from ..listener import Listener, as_listener
from .protocol import ServerProtocol

if TYPE_CHECKING:
    from ..asgi.app import ASGIApplication
    from .server import Server

__all__ = ["INTERFACES", "Application", "adapt", "detect"]

#: The interfaces `--interface` accepts besides "auto".
INTERFACES = ("fastws", "asgi")


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


def detect(app: Any) -> str:
    """The interface `app` speaks: "asgi" for an ASGI 3 application, "fastws" for a
    coroutine handler or a Listener. Raises HandlerError (one line) for anything else."""
    return "asgi" if check(app) == "asgi" else "fastws"


def adapt(app: Any, interface: str = "auto") -> Application | ASGIApplication:
    """Wrap `app` for the server, detecting its interface unless one is given."""
    if interface == "auto":
        interface = detect(app)
    if interface == "asgi":
        from ..asgi.app import ASGIApplication

        return ASGIApplication(app)
    if interface == "fastws":
        check(app)  # one clear error now rather than 1011 on every connection
        return Application(app)
    raise ValueError(f"unknown interface {interface!r} (one of {', '.join(INTERFACES)})")
