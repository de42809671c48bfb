"""What `GET /metrics` and `GET /healthz` answer, for the whole server, from the scoreboard.

Prometheus text format (version 0.0.4), following its conventions: one name, one meaning. Each
metric has one series per worker slot, labelled `worker="0"` .. `"N-1"` (the slot, not the pid:
a restarted or reloaded worker keeps its slot, so its series continues). A slot's counters
include what its previous workers counted, so `sum(fastws_messages_in_total)` is the
server's total and never goes backwards; there is no unlabelled total beside them (a `sum()`
would count it twice). `fastws_worker_info` names the processes (pid, state) behind each slot.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import counters
from .scoreboard import Scoreboard

__all__ = ["CONTENT_TYPE", "Snapshot", "healthz", "prometheus", "snapshot"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "connections_open": "WebSocket connections open now.",
    "handshakes": "Opening handshakes completed (101 Switching Protocols sent).",
    "handshakes_refused": "Handshakes answered with an HTTP error instead of 101.",
    "busy": "Handshakes refused with 503 because a worker had max_connections.",
    "messages_in": "Messages received.",
    "messages_out": "Messages sent.",
    "bytes_in": "Bytes received after the handshake (frame headers included).",
    "bytes_out": "Bytes of frames sent after the opening handshake (control frames too).",
    "errors": "Handler or process_request exceptions.",
    "http_requests": "Plain HTTP requests answered (/healthz, /metrics, routes, ASGI apps).",
    "broadcast_skipped": "Broadcast messages not sent to a connection over broadcast_limit"
    " (broadcast_overflow=skip).",
    "broadcast_closed": "Connections closed with 1008 for being over broadcast_limit"
    " (broadcast_overflow=close).",
    "published": "Messages published on channels.",
    "publish_failed": "Publishes the broker could not take (PublishError raised).",
    "pubsub_lagged": "Times a worker fell behind the shared ring and closed its subscribers"
    " with 1013.",
    "keepalive_visits": "Keepalive visits to connections (a ping sent, or its pong found missing).",
    "keepalive_visits_late": "Keepalive visits more than a tick (at most 1 s) after they were"
    " due: the worker's event loop was behind, its pings left late.",
    "max_connections": "Connections a worker may hold (max_connections; 0: no limit).",
    "message_memory_bytes": "Bytes held by large received messages (max_message_memory budget).",
    "message_memory_limit_bytes": "max_message_memory: the large-message budget of a worker.",
    "write_buffer_bytes": "Bytes sent by handlers that the kernel has not taken yet (sampled).",
    "connections_writing_paused": "Connections whose peer is not reading: over write_limit.",
    "connections_waiting_for_memory": "Connections not read from until message memory frees.",
}


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker process, as read at one moment."""

    pid: int
    slot: int
    state: str
    uptime: float
    heartbeat_age: float
    values: Sequence[int]


@dataclass(frozen=True, slots=True)
class SlotRow:
    """One worker slot (the stable `worker` label): its live processes (two during a reload)
    plus the counts of the workers it had before (so its counters never go backwards)."""

    slot: int
    pids: tuple[int, ...]
    uptime: float  # of its newest process
    heartbeat_age: float  # of its stalest process
    values: Sequence[int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    workers: list[WorkerRow]
    totals: Sequence[int]
    slots: list[SlotRow] = field(default_factory=list)


def snapshot(board: Scoreboard | None) -> Snapshot:
    """The server's state now; without a scoreboard (no master) this process is the server."""
    now, wall = time.monotonic(), time.time()
    if board is None:
        values = list(counters.values)
        row = WorkerRow(os.getpid(), 0, "ready", 0.0, 0.0, values)
        return Snapshot([row], values, [SlotRow(0, (row.pid,), 0.0, 0.0, values)])
    rows = [
        WorkerRow(
            view.pid,
            view.listener,
            view.state_name,
            max(wall - view.started, 0.0),
            max(now - view.heartbeat, 0.0),
            view.values,
        )
        for view in board.workers()
        if view.pid
    ]
    return Snapshot(rows, board.totals(), _slots(board, rows))


def _slots(board: Scoreboard, rows: list[WorkerRow]) -> list[SlotRow]:
    """Per worker slot: live processes added up, on top of the slot's retired counts."""
    out = []
    for slot in range(board.slots):
        live = [row for row in rows if row.slot == slot]
        retired = board.retired(slot)
        if not live and not any(retired):
            continue
        values = list(retired)
        for row in live:
            for i, value in enumerate(row.values):
                values[i] += value
        pids = tuple(sorted(row.pid for row in live))
        uptime = min((row.uptime for row in live), default=0.0)
        age = max((row.heartbeat_age for row in live), default=0.0)
        out.append(SlotRow(slot, pids, uptime, age, values))
    return out


def _metric(name: str) -> tuple[str, str]:
    if name in counters.GAUGES:
        return f"fastws_{name}", "gauge"
    return f"fastws_{name}_total", "counter"


def _family(lines: list[str], metric: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {metric} {help_text}")
    lines.append(f"# TYPE {metric} {kind}")


def prometheus(snap: Snapshot) -> str:
    """Every series of a metric has the same labels: `worker`, the worker slot (0..N-1),
    which a restarted or reloaded worker keeps, so `sum()` over it is the server's total
    and a restart is an ordinary counter reset, not a new series."""
    lines: list[str] = []
    for i, name in enumerate(counters.NAMES):
        metric, kind = _metric(name)
        _family(lines, metric, kind, _HELP[name])
        for row in snap.slots:
            lines.append(f'{metric}{{worker="{row.slot}"}} {row.values[i]}')
    _family(
        lines,
        "fastws_closes_total",
        "counter",
        "Connections closed, by close code (other: any other).",
    )
    codes = [*map(str, counters.CLOSE_CODES), "other"]
    for row in snap.slots:
        for j, code in enumerate(codes):
            value = row.values[counters.CLOSE_FIRST + j]
            lines.append(f'fastws_closes_total{{worker="{row.slot}",code="{code}"}} {value}')
    _family(lines, "fastws_workers", "gauge", "Worker processes alive.")
    lines.append(f"fastws_workers {len(snap.workers)}")
    _family(
        lines,
        "fastws_worker_info",
        "gauge",
        "A worker process: its worker slot, pid and state (two per slot during a reload).",
    )
    for process in snap.workers:
        lines.append(
            f'fastws_worker_info{{worker="{process.slot}",pid="{process.pid}",'
            f'state="{process.state}"}} 1'
        )
    _family(
        lines,
        "fastws_worker_uptime_seconds",
        "gauge",
        "Time since the worker slot's newest process was started.",
    )
    for row in snap.slots:
        if row.pids:
            lines.append(f'fastws_worker_uptime_seconds{{worker="{row.slot}"}} {row.uptime:.3f}')
    _family(
        lines,
        "fastws_worker_heartbeat_age_seconds",
        "gauge",
        "Time since the last beat of the worker slot's stalest process.",
    )
    for row in snap.slots:
        if row.pids:
            lines.append(
                f'fastws_worker_heartbeat_age_seconds{{worker="{row.slot}"}} '
                f"{row.heartbeat_age:.3f}"
            )
    return "\n".join(lines) + "\n"


def healthz(snap: Snapshot) -> str:
    ready = sum(row.state == "ready" for row in snap.workers)
    body = {
        "status": "ok",
        "workers": len(snap.workers),
        "ready": ready,
        "connections": snap.totals[counters.CONNECTIONS_OPEN],
    }
    return json.dumps(body) + "\n"
