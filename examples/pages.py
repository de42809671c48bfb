"""A demo's page over plain HTTP, beside its fastws server.

fastws answers only WebSocket upgrades (and its own /healthz, /metrics, /dashboard), so a
demo serves its one HTML page from a second port with this tiny asyncio HTTP responder:
GET / is the page (with ``__WS_URL__`` replaced by the WebSocket address), anything else 404.
Good for a demo on 127.0.0.1; a real site serves its pages with its web server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

__all__ = ["serve_page"]

MAX_HEAD = 16 * 1024


async def serve_page(page: Path, host: str, port: int, ws_url: str) -> asyncio.Server:
    """Start answering GET / with `page` on host:port; returns the listening server."""
    body = page.read_text("utf-8").replace("__WS_URL__", ws_url).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method == b"GET" and path in (b"/", b"/index.html"):
            status, content, kind = b"200 OK", body, b"text/html; charset=utf-8"
        else:
            status, content, kind = b"404 Not Found", b"not found\n", b"text/plain"
        head = (
            b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head % (status, kind, len(content)) + content)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port, limit=MAX_HEAD)
