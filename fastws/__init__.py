"""fastws: a multi-process, high-performance WebSocket server (RFC 6455) on uvloop.

import fastws

async def handler(ws: fastws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)

fastws.run(handler, port=8000)

The names below are imported on first use (PEP 562), so that `import fastws.protocol` (the
sans-I/O core) or `fastws --help` does not import asyncio, uvloop or numpy.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy exports are, for type checkers and IDEs
    from .broadcast import broadcast
    from .client import connect
    from .config import Config, ConfigError
    from .exceptions import (
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        HandshakeError,
        InvalidHandshake,
        InvalidStatus,
        InvalidURI,
        WebSocketException,
    )
    from .handler import HandlerError
    from .launch import run
    from .listener import Listener
    from .message import Message, MessageReleased
    from .protocol.frames import CloseCode
    from .protocol.handshake import Headers, Request, Response
    from .pubsub.broker import PublishError
    from .pubsub.hub import publish
    from .server import Server, serve
    from .server.protocol import ServerConnection
    from .server.server import Handler
    from .websocket import WebSocket

    __version__: str

#: Exported name -> the module that defines it.
_EXPORTS = {
    "CloseCode": "fastws.protocol.frames",
    "Config": "fastws.config",
    "ConfigError": "fastws.config",
    "ConnectionClosed": "fastws.exceptions",
    "ConnectionClosedError": "fastws.exceptions",
    "ConnectionClosedOK": "fastws.exceptions",
    "Handler": "fastws.server.server",
    "HandlerError": "fastws.handler",
    "HandshakeError": "fastws.exceptions",
    "Headers": "fastws.protocol.handshake",
    "InvalidHandshake": "fastws.exceptions",
    "InvalidStatus": "fastws.exceptions",
    "InvalidURI": "fastws.exceptions",
    "Listener": "fastws.listener",
    "Message": "fastws.message",
    "MessageReleased": "fastws.message",
    "PublishError": "fastws.pubsub.broker",
    "Request": "fastws.protocol.handshake",
    "Response": "fastws.protocol.handshake",
    "Server": "fastws.server",
    "ServerConnection": "fastws.server.protocol",
    "WebSocket": "fastws.websocket",
    "WebSocketException": "fastws.exceptions",
    "broadcast": "fastws.broadcast",
    "connect": "fastws.client",
    "publish": "fastws.pubsub.hub",
    "run": "fastws.launch",
    "serve": "fastws.server",
}

__all__ = [
    "CloseCode",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Handler",
    "HandlerError",
    "HandshakeError",
    "Headers",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "Listener",
    "Message",
    "MessageReleased",
    "PublishError",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "WebSocket",
    "WebSocketException",
    "broadcast",
    "connect",
    "publish",
    "run",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name == "__version__":
        value = _version()
    else:
        # `import fastws` then `fastws.server.X`: importing everything eagerly made that work.
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # the next lookup does not come here
    return value


class _Package(types.ModuleType):
    """`fastws.broadcast` is both a module and the function it defines. Importing the module
    binds the module to the package's attribute; the export stays the function, as it was
    when this package imported everything eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fastws")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0+unknown"
