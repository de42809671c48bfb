"""A worker's budgets as gauges: how close it is to max_connections, max_message_memory and
its write buffers, published with the heartbeat into the counters /metrics reports.

Sampled at heartbeat time, never kept up to date on the message path. The cheap ones (the
configured limits, the bytes the message budget holds) are read at every beat. The write
buffers take a pass over the connections (~170 ns each: 17 ms at 100,000 connections), so
that pass is spaced out to cost at most `MAX_SHARE` of the machine's time, split among the
workers that share its cores: every beat on a small server, every ~1.7 s for a worker of
100,000 connections with a core of its own, and for 63 workers of 16,000 connections on 2
cores (a million) every ~1.8 s each, not every beat (an estimated ~7 % of the machine).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..protocol.connection import Blocked
from ..stats import counters

if TYPE_CHECKING:
    from .server import Server

__all__ = ["MAX_SHARE", "GaugeSampler"]

#: Largest share of the machine's time the passes over the connections may take (a worker
#: gets its part: MAX_SHARE x cores / workers when workers outnumber the cores).
MAX_SHARE = 0.01


class GaugeSampler:
    """Writes `server`'s budget gauges into `counters.values` when called (each heartbeat)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._next_pass = 0.0  # monotonic time before which the connections are not walked
        cores = os.cpu_count() or 1
        self._share = MAX_SHARE * min(1.0, cores / max(1, server.config.workers))

    def __call__(self) -> None:
        server = self._server
        values = counters.values
        values[counters.MAX_CONNECTIONS] = server.config.max_connections or 0
        values[counters.MESSAGE_MEMORY] = server.budget.held
        values[counters.MESSAGE_MEMORY_LIMIT] = server.budget.limit
        start = time.monotonic()
        if start < self._next_pass:
            return
        buffered = writing_paused = waiting = 0
        for ws in server.each_connection():
            buffered += ws.outbox.in_transport()
            writing_paused += ws.writing_paused
            waiting += ws.protocol.blocked is Blocked.MEMORY
        values[counters.WRITE_BUFFER] = buffered
        values[counters.WRITING_PAUSED] = writing_paused
        values[counters.WAITING_FOR_MEMORY] = waiting
        self._next_pass = start + (time.monotonic() - start) / self._share
