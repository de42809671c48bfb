"""Fixtures for the ASGI tests: the apps of tests/asgi/apps.py on real fastws servers."""

from __future__ import annotations

import socket
from typing import Any

import pytest

STARLETTE = "tests.asgi.apps:starlette_app"
FASTAPI = "tests.asgi.apps:fastapi_app"


@pytest.fixture(scope="module")
def starlette_server(start_module_server: Any) -> Any:
    """The Starlette app on one worker, shared by a module."""
    return start_module_server(STARLETTE, workers=1, max_message_size="4MiB")


@pytest.fixture(scope="module")
def fastapi_server(start_module_server: Any) -> Any:
    """The FastAPI app on two workers, shared by a module."""
    return start_module_server(FASTAPI, workers=2)


def http_base(server: Any) -> str:
    return f"http://{server.host}:{server.port}"


def raw_exchange(server: Any, data: bytes, *, until: bytes | None = None, count: int = 1) -> bytes:
    """Send `data` on a plain TCP connection; read until `until` has been seen `count`
    times (or the server closes); return everything read."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while until is None or received.count(until) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received
