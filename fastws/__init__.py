"""fastws: a multi-process, high-performance WebSocket server (RFC 6455) on uvloop.

import fastws

async def handler(ws: fastws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)

fastws.run(handler, port=8000)
"""

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
from .listener import Listener
from .message import Message, MessageReleased
from .protocol.frames import CloseCode
from .protocol.handshake import Headers, Request, Response
from .pubsub.broker import PublishError
from .pubsub.hub import publish
from .server import Server, run, serve
from .websocket import WebSocket

__all__ = [
    "CloseCode",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
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
    "WebSocket",
    "WebSocketException",
    "broadcast",
    "connect",
    "publish",
    "run",
    "serve",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("fastws")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"
