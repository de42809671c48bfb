"""The parts of an ASGI scope that HTTP requests and WebSockets share."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import unquote

__all__ = ["address", "headers", "path"]


def address(value: Any) -> tuple[str, int] | None:
    """A (host, port) pair from a socket address; None for a Unix socket."""
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def sockname(transport: Any) -> tuple[str, int] | None:
    """The server's own address as ASGI's `server` (host, port) or (path, None)."""
    name = transport.get_extra_info("sockname")
    if isinstance(name, tuple):
        return address(name)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        return (str(name), None)  # type: ignore[return-value]  # ASGI: [path, None]
    return None


def headers(raw: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """ASGI headers: lowercased byte names, byte values, in order, duplicates kept."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in raw]


def path(raw_path: str) -> str:
    """The percent-decoded path (ASGI's `path`; `raw_path` keeps the bytes as sent)."""
    return unquote(raw_path) if "%" in raw_path else raw_path
