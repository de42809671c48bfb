"""The live dashboard (``--dashboard``): a page at /dashboard and the WebSocket that feeds it.

``GET /dashboard`` answers one static page (dashboard.html: inline CSS and JS, nothing
fetched from anywhere else). The page opens a WebSocket back to ``/dashboard`` on the same
port; the worker that accepts it sends a snapshot every second: per worker and in total, the
counters `/metrics` shows (read from the same scoreboard), their rates per second, and each
process's RSS from /proc. Nothing else is exposed: no request data, no configuration.

Costs nothing on the per-message path: the counters are the ones the hot path already keeps,
and only a viewer's own connection reads them. A viewer is not part of what it shows: its
route is uncounted (no connection, handshake or close counts, no keepalive pings, its bytes
out go to an uncounted Outbox) and the feed takes its own snapshots' message count and the
viewer's Close frame back out of the counters, so an idle server shows zeros while someone
watches it. Both are ordinary routes (see server.routes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..protocol.frames import CloseCode
from ..protocol.handshake import HandshakeError, Request, Response
from ..stats import counters, metrics
from ..websocket import ConnectionClosed

if TYPE_CHECKING:
    from .protocol import ServerProtocol

__all__ = ["PATH", "Sampler", "check_same_origin", "feed", "page_route"]

PATH = "/dashboard"
#: Seconds between snapshots.
INTERVAL = 1.0
#: Counters shown as rates per second too.
RATES = ("handshakes", "messages_in", "messages_out", "bytes_in", "bytes_out")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_CLOSE_NAMES = [*map(str, counters.CLOSE_CODES), "other"]


@cache
def page() -> Response:
    """The page, with a Content-Security-Policy that allows its own inline script and style
    (by hash) and WebSockets to this origin, and nothing else."""
    html = resources.files(__package__).joinpath("dashboard.html").read_text("utf-8")
    hashes = {}
    for tag in ("script", "style"):
        found = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        assert found is not None, f"dashboard.html has no <{tag}>"
        digest = hashlib.sha256(found[1].encode()).digest()
        hashes[tag] = "'sha256-" + base64.b64encode(digest).decode() + "'"
    policy = (
        f"default-src 'none'; script-src {hashes['script']}; style-src {hashes['style']};"
        " connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
    return Response(200, headers=headers, body=html.encode())


def page_route(server: Any, request: Request) -> Response:
    """GET /dashboard: the page."""
    return page()


def check_same_origin(request: Request, server: Any) -> None:
    """Only the dashboard page itself (or a non-browser client, which sends no Origin) may
    open the feed: another site's page must not read the server's figures through a
    visitor's browser (cross-site WebSocket hijacking)."""
    origins = request.headers.get_all("Origin")
    if not origins:
        return
    host = request.headers.get("Host") or ""
    expected = ("https://" if server.ssl is not None else "http://") + host
    if len(origins) > 1 or origins[0].lower() != expected.lower():
        raise HandshakeError(403, "origin not allowed")


async def feed(ws: ServerProtocol) -> None:
    """The page's WebSocket: a snapshot each second until the page goes; any input closes
    it with 1008 (the dashboard takes none)."""
    sampler = Sampler(ws.server)
    try:
        while True:
            text = json.dumps(sampler.sample(), separators=(",", ":"))  # ASCII: 1 B a char
            await ws.send(text)
            counters.values[counters.MESSAGES_OUT] -= 1  # its bytes: an uncounted Outbox
            try:
                message = await asyncio.wait_for(ws.recv(), INTERVAL)
            except TimeoutError:
                continue
            size = len(message.encode() if isinstance(message, str) else message)
            _uncount(counters.MESSAGES_IN, counters.BYTES_IN, _frame_size(size, True))
            await ws.close(CloseCode.POLICY_VIOLATION, "the dashboard takes no input")
            _uncount_close(ws)
            return
    except ConnectionClosed:
        _uncount_close(ws)


def _frame_size(payload: int, masked: bool) -> int:
    """Bytes of one frame carrying `payload` bytes (5.2: 7-bit, 16-bit or 64-bit length)."""
    header = 2 if payload < 126 else 4 if payload < 65536 else 10
    return header + payload + (4 if masked else 0)


def _uncount(messages: int, nbytes: int, size: int) -> None:
    counters.values[messages] -= 1
    counters.values[nbytes] -= size


def _uncount_close(ws: ServerProtocol) -> None:
    """The viewer's Close frame (it echoes ours, or sends its own) is no traffic either."""
    code = ws.close_code
    if code is None or code == CloseCode.ABNORMAL:
        return  # no Close frame came
    body = 0 if code == CloseCode.NO_STATUS else 2 + len((ws.close_reason or "").encode())
    counters.values[counters.BYTES_IN] -= _frame_size(body, True)


class Sampler:
    """Snapshots of the whole server, with rates since the previous snapshot."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._last: dict[int, tuple[float, Sequence[int]]] = {}  # pid -> (published at, values)

    def sample(self) -> dict[str, Any]:
        board = self._server.scoreboard
        self._server.sample_gauges()  # as for /metrics: this worker's budgets, now
        if board is not None:
            board.beat(self._server.scoreboard_slot)  # this worker's own counts: up to date
        now = time.monotonic()
        snap = metrics.snapshot(board)
        last, self._last = self._last, {}
        workers: list[dict[str, Any]] = []
        for row in snap.workers:
            published = now - row.heartbeat_age
            self._last[row.pid] = (published, row.values)
            rates = None
            before = last.get(row.pid)
            # None for a new worker, and for one that has not beaten since (stuck).
            if before is not None and published > before[0]:
                elapsed = published - before[0]
                rates = {
                    name: (row.values[i] - before[1][i]) / elapsed
                    for i, name in enumerate(counters.NAMES)
                    if name in RATES
                }
            workers.append(
                {
                    "pid": row.pid,
                    "slot": row.slot,
                    "state": row.state,
                    "uptime": round(row.uptime, 1),
                    "heartbeat_age": round(row.heartbeat_age, 3),
                    "rss": rss(row.pid),
                    "counters": _counters(row.values),
                    "closes": _closes(row.values),
                    "rates": rates,
                }
            )
        master = os.getppid() if board is not None else None
        total_rates = None
        if workers and all(worker["rates"] is not None for worker in workers):
            total_rates = {name: sum(w["rates"][name] for w in workers) for name in RATES}
        memory = [worker["rss"] for worker in workers]
        if master is not None:
            memory.append(rss(master))
        return {
            "time": time.time(),
            "interval": INTERVAL,
            "master": None if master is None else {"pid": master, "rss": memory[-1]},
            "workers": workers,
            "total": {
                "counters": _counters(snap.totals),
                "closes": _closes(snap.totals),
                "rates": total_rates,
                "rss": sum(m for m in memory if m is not None),
            },
        }


def _counters(values: Sequence[int]) -> dict[str, int]:
    return {name: values[i] for i, name in enumerate(counters.NAMES)}


def _closes(values: Sequence[int]) -> dict[str, int]:
    return {name: values[counters.CLOSE_FIRST + j] for j, name in enumerate(_CLOSE_NAMES)}


def rss(pid: int) -> int | None:
    """Resident memory of a process in bytes (None if it is gone or not ours to read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None
