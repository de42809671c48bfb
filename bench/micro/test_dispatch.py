"""The per-message path of `WebSocket` (receive dispatch and send), fed without sockets.

`test_receive.py` measures the protocol core; this measures what the I/O layer adds on top of
it per message: `buffer_updated` -> `_dispatch` -> queue, and `send()` -> framing -> transport.

pytest bench/micro -k dispatch --benchmark-enable --benchmark-only
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from fastws.protocol.frames import encode_header
from fastws.protocol.mask import unmask
from fastws.websocket import WebSocket

BATCH = 1000


class NullTransport:
    """Just enough of a transport for the data path: writes go nowhere."""

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def client_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    return encode_header(1, len(payload), fin=True, mask=key) + unmask(payload, key)


def open_ws(loop: asyncio.AbstractEventLoop, transport: Any = None) -> WebSocket:
    """A server's WebSocket made on `loop` and open, writing to `transport` (by default one
    whose writes go nowhere); no keepalive."""

    async def make() -> WebSocket:
        ws = WebSocket(
            max_message_size=1 << 20,
            max_frame_size=None,
            max_fragments=1000,
            max_queue=1 << 30,  # never pause reading: the queue is emptied by the benchmark
            write_limit=1 << 20,
            close_timeout=1.0,
            ping_interval=None,
            ping_timeout=None,
            client=False,
        )
        ws.connection_made(transport or NullTransport())
        ws._opened(b"")
        return ws

    return loop.run_until_complete(make())


@pytest.fixture
def ws() -> Iterator[WebSocket]:
    loop = asyncio.new_event_loop()
    yield open_ws(loop)
    loop.close()


def _receive(ws: WebSocket, data: bytes) -> int:
    buf = ws.get_buffer(-1)
    buf[: len(data)] = data
    ws.buffer_updated(len(data))
    n = len(ws._queue)
    ws._queue.clear()
    return n


def test_dispatch_batch(benchmark: Any, ws: WebSocket) -> None:
    """1,000 pipelined 64-byte text frames in one read: cost per message = mean / 1000."""
    data = b"".join(client_frame(b"x" * 64) for _ in range(BATCH))
    assert benchmark(_receive, ws, data) == BATCH


def test_dispatch_one(benchmark: Any, ws: WebSocket) -> None:
    """One 64-byte text frame per read: the request/response case."""
    data = client_frame(b"x" * 64)
    assert benchmark(_receive, ws, data) == 1


def _send_batch(ws: WebSocket, payload: bytes) -> None:
    coro = ws.send
    for _ in range(BATCH):
        with contextlib.suppress(StopIteration):
            coro(payload).send(None)


def test_send_small(benchmark: Any, ws: WebSocket) -> None:
    """1,000 sends of a 64-byte binary message (no backpressure): cost per send = mean / 1000."""
    benchmark(_send_batch, ws, b"y" * 64)


class _Echo:
    """The built-in echo's callback, as a plain object (no server needed)."""

    def on_open(self, ws: Any) -> None:
        pass

    def on_message(self, ws: Any, message: Any) -> None:
        ws.send_nowait(message, release=True)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        pass


@pytest.fixture
def listener_ws(ws: WebSocket) -> WebSocket:
    ws._listener = _Echo()  # what _opened(leftover, listener) sets for a Listener handler
    return ws


def _receive_and_answer(ws: WebSocket, data: bytes) -> None:
    buf = ws.get_buffer(-1)
    buf[: len(data)] = data
    ws.buffer_updated(len(data))


def test_listener_echo_one(benchmark: Any, listener_ws: WebSocket) -> None:
    """One 64-byte binary frame per read, answered by a Listener's on_message with
    send_nowait: the whole per-message path of the callback API but the syscalls."""
    data = client_frame(b"x" * 64)
    benchmark(_receive_and_answer, listener_ws, data)


def test_listener_echo_one_binary(benchmark: Any, listener_ws: WebSocket) -> None:
    """As test_listener_echo_one with a 64-byte binary frame (bench scenario b's message):
    adds the `Message` the listener gets and releases."""
    data = client_frame(b"x" * 64)
    data = bytes([0x82]) + data[1:]
    benchmark(_receive_and_answer, listener_ws, data)


def test_listener_echo_batch(benchmark: Any, listener_ws: WebSocket) -> None:
    """1,000 pipelined 64-byte frames in one read, each answered (one writev for all):
    cost per message = mean / 1000."""
    data = b"".join(client_frame(b"x" * 64) for _ in range(BATCH))
    benchmark(_receive_and_answer, listener_ws, data)


def _coroutine_echo_ws() -> tuple[asyncio.AbstractEventLoop, WebSocket]:
    import uvloop

    loop = uvloop.new_event_loop()
    return loop, open_ws(loop)


def test_coroutine_echo_one(benchmark: Any) -> None:
    """One 64-byte binary frame per read, answered by the built-in coroutine echo (`async for
    message in ws.messages(): await ws.send(message, release=True)`) on uvloop: the handler's
    wake-up and the send, per message = mean / 1000 (each message also costs the driver one
    `asyncio.sleep(0)`, the loop iteration in which the handler runs)."""
    from fastws.apps.echo import echo

    loop, ws = _coroutine_echo_ws()
    data = client_frame(b"x" * 64)
    data = bytes([0x82]) + data[1:]
    sent = []
    ws._transport.write = sent.append  # type: ignore[union-attr]

    async def drive() -> None:
        for _ in range(BATCH):
            buf = ws.get_buffer(-1)
            buf[: len(data)] = data
            ws.buffer_updated(len(data))
            await asyncio.sleep(0)

    handler = loop.create_task(echo(ws))
    loop.run_until_complete(asyncio.sleep(0))  # the handler waits for its first message
    benchmark(lambda: loop.run_until_complete(drive()))
    assert len(sent) >= BATCH and sent[-1] == b"\x82\x40" + b"x" * 64
    handler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(handler)
    loop.close()
