"""ASGI apps over TLS (--certfile/--keyfile): https:// for the HTTP routes and wss:// for the
WebSockets on one port, with the scheme in the scope."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.server.test_tls import Certs, certs, client_context  # noqa: F401  (certs: fixture)


def test_https_and_wss(start_server: Any, certs: Certs) -> None:  # noqa: F811
    """A verified TLS handshake, then the app's HTTP route (scheme https in its view of the
    URL) and its WebSocket (scope scheme wss)."""
    server = start_server("tests.asgi.apps:starlette_app", certfile=certs.cert, keyfile=certs.key)
    context = client_context(certs.ca)
    with httpx.Client(verify=context) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/")
    assert response.json()["greeting"] == "hello from lifespan"
    assert response.json()["scheme"] == "https"

    async def main() -> dict[str, Any]:
        url = f"wss://127.0.0.1:{server.port}/scope"
        async with websockets.connect(url, ssl=context) as ws:
            return dict(json.loads(await ws.recv()))

    assert asyncio.run(main())["scheme"] == "wss"
