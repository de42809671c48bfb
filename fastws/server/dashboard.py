"""The live dashboard (``--dashboard``): a page at /dashboard and the WebSocket that feeds it.

``GET /dashboard`` answers one static page (dashboard.html: inline CSS and JS, nothing
fetched from anywhere else). The page opens a WebSocket back to ``/dashboard`` on the same
port; the worker that accepts it sends a snapshot every second: per worker and in total, the
counters `/metrics` shows (read from the same scoreboard), their rates per second, and each
process's RSS from /proc. Nothing else is exposed: no request data, no configuration.

Costs nothing on the per-message path: the counters are the ones the hot path already keeps,
and only a viewer's own connection reads them. A viewer is not part of what it shows: its
connection, its snapshots and its pongs are not counted (it becomes a `Viewer`, whose
bookkeeping skips the counters), so an idle server shows zeros while someone watches it.
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
from typing import Any

from ..outbox import Outbox, flusher
from ..protocol.connection import State
from ..protocol.frames import CloseCode, Opcode
from ..protocol.handshake import HandshakeError, Request, Response, accept_response, check_upgrade
from ..stats import counters, metrics
from ..websocket import ConnectionClosed, WebSocket
from .protocol import ServerProtocol

__all__ = ["PATH", "Sampler", "Viewer", "answer"]

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


def answer(conn: ServerProtocol, request: Request, leftover: bytes) -> None:
    """Serve the page (plain GET) or turn the connection into a `Viewer` (an upgrade)."""
    if "Upgrade" not in request.headers:
        counters.values[counters.HTTP_REQUESTS] += 1
        conn._respond(page())
        return
    try:
        key = check_upgrade(request)
        _check_same_origin(request, tls=conn._server.ssl is not None)
    except HandshakeError as exc:
        conn._reject(exc.response(), f"{exc.status} {exc.reason} (dashboard)")
        return
    # Same slots, other bookkeeping: a viewer is not counted in what it shows.
    conn.__class__ = Viewer
    assert isinstance(conn, Viewer)
    conn._watch(key, leftover)


def _check_same_origin(request: Request, *, tls: bool) -> None:
    """Only the dashboard page itself (or a non-browser client, which sends no Origin) may
    open the feed: another site's page must not read the server's figures through a
    visitor's browser (cross-site WebSocket hijacking)."""
    origins = request.headers.get_all("Origin")
    if not origins:
        return
    host = request.headers.get("Host") or ""
    expected = ("https://" if tls else "http://") + host
    if len(origins) > 1 or origins[0].lower() != expected.lower():
        raise HandshakeError(403, "origin not allowed")


class Viewer(ServerProtocol):
    """A dashboard page's WebSocket: sent a snapshot each second, counted nowhere."""

    __slots__ = ()

    def _watch(self, key: str, leftover: bytes) -> None:
        if self._transport is None:
            return
        self._cancel_handshake_timer()
        # No subprotocol, no compression: the snapshots are small and sent once a second.
        self._transport.write(accept_response(key).serialize())
        self.request.headers.compact()  # type: ignore[union-attr]
        self._handler_task = self._loop.create_task(self._feed())
        self._out = Outbox(self._transport, flusher(self._loop), counted=False)
        self._opened(leftover)

    async def _feed(self) -> None:
        sampler = Sampler(self._server)
        try:
            while True:
                self._publish(json.dumps(sampler.sample(), separators=(",", ":")))
                try:
                    await asyncio.wait_for(self.recv(), INTERVAL)
                except TimeoutError:
                    continue
                await self.close(CloseCode.POLICY_VIOLATION, "the dashboard takes no input")
                return
        except ConnectionClosed:
            return

    def _publish(self, text: str) -> None:
        """Send one snapshot, unless the page is not reading (then it gets the next one)."""
        transport = self._transport
        if self._writing_paused or transport is None or transport.is_closing():
            return
        if self._conn.state is State.OPEN:
            self._write_data(self._conn.send_data(Opcode.TEXT, text.encode()))

    def buffer_updated(self, nbytes: int) -> None:
        super().buffer_updated(nbytes)
        counters.values[counters.BYTES_IN] -= nbytes  # its pongs and Close are not traffic

    def connection_lost(self, exc: Exception | None) -> None:
        WebSocket.connection_lost(self, exc)  # not ServerProtocol's: that one counts
        self._server._connections.discard(self)


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
