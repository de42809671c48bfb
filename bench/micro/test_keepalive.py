"""Keepalive's Python per ping, without sockets: the wheel's visits and the lone pong's short
path, for connections that answer every ping (the whole keepalive load of an idle server).

A wheel of `CONNS` real `WebSocket`s (writes go nowhere) on a clock the benchmark moves, at a
million's settings (ping_interval 29 s, ping_timeout 20 s, ticks of 1 s): one round is 29
ticks, in which every connection is pinged once and its pong read through `buffer_updated`
right after the tick that pinged it (and, before the pong moved it out of the wheel's way, it
was visited a second time at ping_timeout). Cost per ping = mean / CONNS.

pytest bench/micro -k keepalive --benchmark-enable --benchmark-only
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastws.keepalive import KEEPALIVE_PAYLOAD, KeepaliveWheel
from fastws.protocol.frames import encode_header
from fastws.protocol.mask import unmask
from fastws.websocket import WebSocket

from .test_dispatch import NullTransport, open_ws

CONNS = 2000
INTERVAL = 29


class _Clock:
    """What a KeepaliveWheel uses of its loop, on a clock that moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        entry = (when, callback)
        self.timers.append(entry)
        clock = self

        class Handle:
            def cancel(self) -> None:
                if entry in clock.timers:
                    clock.timers.remove(entry)

        return Handle()

    def call_soon(self, callback: Callable[[], None]) -> Any:
        return self.call_at(self.now, callback)

    def run_due(self) -> None:
        while True:
            due = [t for t in self.timers if t[0] <= self.now]
            if not due:
                return
            self.timers.remove(due[0])
            due[0][1]()


class _Pinged(NullTransport):
    """Notes its connection when something is written to it (the keepalive ping)."""

    def __init__(self, pinged: list[WebSocket]) -> None:
        self.pinged = pinged
        self.ws: WebSocket | None = None

    def write(self, data: Any) -> None:
        assert self.ws is not None
        self.pinged.append(self.ws)


@pytest.fixture
def wheel_of_conns() -> Iterator[tuple[_Clock, list[WebSocket], bytes]]:
    loop = asyncio.new_event_loop()
    pinged: list[WebSocket] = []

    def make() -> WebSocket:
        transport = _Pinged(pinged)
        ws = transport.ws = open_ws(loop, transport)  # not in the loop's wheel: the benchmark's
        ws._ping_interval = float(INTERVAL)
        ws._ping_timeout = 20.0
        return ws

    conns = [make() for _ in range(CONNS)]
    clock = _Clock()
    wheel = KeepaliveWheel(clock, 1.0)  # type: ignore[arg-type]
    for i, ws in enumerate(conns):
        wheel.add(ws, 1 + i % INTERVAL)
    key = os.urandom(4)
    pong = encode_header(0xA, len(KEEPALIVE_PAYLOAD), fin=True, mask=key) + unmask(
        KEEPALIVE_PAYLOAD, key
    )
    yield clock, pinged, pong
    loop.close()


def _round(clock: _Clock, pinged: list[WebSocket], pong: bytes) -> int:
    n = 0
    for _ in range(INTERVAL):
        clock.now += 1.0
        clock.run_due()
        for ws in pinged:
            buf = ws.get_buffer(-1)
            buf[: len(pong)] = pong
            ws.buffer_updated(len(pong))
        n += len(pinged)
        pinged.clear()
    return n


def test_keepalive_round(benchmark: Any, wheel_of_conns: tuple[_Clock, Any, bytes]) -> None:
    """Every connection pinged once and its pong read: cost per ping = mean / 2000."""
    clock, pinged, pong = wheel_of_conns
    _round(clock, pinged, pong)  # the first round: every connection in step
    assert benchmark(_round, clock, pinged, pong) == CONNS
