"""ASGI 3 applications (FastAPI, Starlette, ...) on fastws: `fastws serve main:app`.

The server tells an ASGI application from a fastws handler by its parameters (or by
``--interface asgi``) and then serves it on one port: its HTTP routes over HTTP/1.1
(`fastws.asgi.http`), its WebSocket routes on fastws's own WebSocket connections
(`fastws.asgi.websocket`), its lifespan once per worker (`fastws.asgi.lifespan`).

`connection(websocket)` is the fastws connection behind an ASGI WebSocket (a Starlette
``WebSocket`` or its scope), for channels: ``connection(websocket).subscribe("room")``,
then ``await fastws.publish("room", text)`` from anywhere in the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .lifespan import LifespanFailed
from .websocket import ClientDisconnected

if TYPE_CHECKING:
    from ..server.protocol import ServerProtocol

__all__ = ["ClientDisconnected", "LifespanFailed", "connection"]


def connection(websocket: Any) -> ServerProtocol:
    """The fastws connection behind an ASGI WebSocket: a Starlette/FastAPI ``WebSocket``
    (anything with a ``scope``) or a scope dict. Raises LookupError when the WebSocket is
    not served by fastws."""
    scope = websocket if isinstance(websocket, Mapping) else websocket.scope
    try:
        return scope["extensions"]["fastws"]["connection"]
    except (KeyError, TypeError):
        raise LookupError("this WebSocket is not served by fastws") from None
