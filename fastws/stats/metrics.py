"""What `GET /metrics` and `GET /healthz` answer, for the whole server, from the scoreboard.

Prometheus text format (version 0.0.4). Every counter appears once per live worker, with a
`worker` label (the worker's pid), and once without labels: the server's total, which also
includes the counts of workers that have exited (so it never goes backwards; it is therefore
not the sum of the labelled series).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
    "bytes_out": "Bytes of data frames sent (frame headers included).",
    "errors": "Handler or process_request exceptions.",
    "http_requests": "Plain HTTP requests answered (/healthz, /metrics).",
    "broadcast_skipped": "Broadcast messages not sent to a connection over broadcast_limit"
    " (broadcast_overflow=skip).",
    "broadcast_closed": "Connections closed with 1008 for being over broadcast_limit"
    " (broadcast_overflow=close).",
    "published": "Messages published on channels.",
    "publish_failed": "Publishes the broker could not take (PublishError raised).",
    "pubsub_lagged": "Times a worker fell behind the shared ring and closed its subscribers"
    " with 1013.",
    "max_connections": "Connections a worker may hold (max_connections; 0: no limit).",
    "message_memory_bytes": "Bytes held by large received messages (max_message_memory budget).",
    "message_memory_limit_bytes": "max_message_memory: the large-message budget of a worker.",
    "write_buffer_bytes": "Bytes sent by handlers that the kernel has not taken yet (sampled).",
    "connections_writing_paused": "Connections whose peer is not reading: over write_limit.",
    "connections_waiting_for_memory": "Connections not read from until message memory frees.",
}


@dataclass(frozen=True, slots=True)
class WorkerRow:
    pid: int
    slot: int
    state: str
    uptime: float
    heartbeat_age: float
    values: Sequence[int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    workers: list[WorkerRow]
    totals: Sequence[int]


def snapshot(board: Scoreboard | None) -> Snapshot:
    """The server's state now; without a scoreboard (no master) this process is the server."""
    now, wall = time.monotonic(), time.time()
    if board is None:
        row = WorkerRow(os.getpid(), 0, "ready", 0.0, 0.0, list(counters.values))
        return Snapshot([row], list(counters.values))
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
    return Snapshot(rows, board.totals())


def _metric(name: str) -> tuple[str, str]:
    if name in counters.GAUGES:
        return f"fastws_{name}", "gauge"
    return f"fastws_{name}_total", "counter"


def prometheus(snap: Snapshot) -> str:
    lines: list[str] = []
    for i, name in enumerate(counters.NAMES):
        metric, kind = _metric(name)
        lines.append(f"# HELP {metric} {_HELP[name]}")
        lines.append(f"# TYPE {metric} {kind}")
        for row in snap.workers:
            lines.append(f'{metric}{{worker="{row.pid}"}} {row.values[i]}')
        lines.append(f"{metric} {snap.totals[i]}")
    lines.append("# HELP fastws_closes_total Connections closed, by close code (other: any other).")
    lines.append("# TYPE fastws_closes_total counter")
    codes = [*map(str, counters.CLOSE_CODES), "other"]
    for row in snap.workers:
        for j, code in enumerate(codes):
            value = row.values[counters.CLOSE_FIRST + j]
            if value:
                lines.append(f'fastws_closes_total{{worker="{row.pid}",code="{code}"}} {value}')
    for j, code in enumerate(codes):
        lines.append(
            f'fastws_closes_total{{code="{code}"}} {snap.totals[counters.CLOSE_FIRST + j]}'
        )
    lines.append("# HELP fastws_workers Worker processes alive.")
    lines.append("# TYPE fastws_workers gauge")
    lines.append(f"fastws_workers {len(snap.workers)}")
    lines.append("# HELP fastws_worker_info A worker's slot and state.")
    lines.append("# TYPE fastws_worker_info gauge")
    for row in snap.workers:
        lines.append(
            f'fastws_worker_info{{worker="{row.pid}",slot="{row.slot}",state="{row.state}"}} 1'
        )
    lines.append("# HELP fastws_worker_uptime_seconds Time since the worker was started.")
    lines.append("# TYPE fastws_worker_uptime_seconds gauge")
    for row in snap.workers:
        lines.append(f'fastws_worker_uptime_seconds{{worker="{row.pid}"}} {row.uptime:.3f}')
    lines.append("# HELP fastws_worker_heartbeat_age_seconds Time since the worker's last beat.")
    lines.append("# TYPE fastws_worker_heartbeat_age_seconds gauge")
    for row in snap.workers:
        lines.append(
            f'fastws_worker_heartbeat_age_seconds{{worker="{row.pid}"}} {row.heartbeat_age:.3f}'
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
