"""fastws.websocket: the handler API's receiving side over a real server and a real client
(the `websockets` library): what a handler that waits with timeouts, or by mistake from two
coroutines, gets."""

from __future__ import annotations

import os
from typing import Any

from websockets.sync.client import connect

from tests.conftest import ServerFactory


def _connect(server: Any) -> Any:
    return connect(f"ws://127.0.0.1:{server.port}", max_size=None, open_timeout=10)


def test_recv_after_a_cancelled_recv(start_server: ServerFactory) -> None:
    """asyncio.wait_for(ws.recv(), t) cancels recv() when t expires; the next recv() gets
    the next message, in order, text and binary, small and large (the wait of the cancelled
    call must not be mistaken for a second reader)."""
    server = start_server(app="tests.apps:patient_echo")
    with _connect(server) as ws:
        for message in ("first", b"\x00" * 100, "third", os.urandom(3 << 20)):
            assert ws.recv(timeout=10) == "timeout"
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_a_second_reader_is_refused(start_server: ServerFactory) -> None:
    """recv() from a second coroutine while one waits raises RuntimeError in the second;
    the first still gets the message."""
    server = start_server(app="tests.apps:two_readers")
    with _connect(server) as ws:
        assert ws.recv(timeout=10) == (
            "refused: another coroutine is already waiting for the next message"
        )
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
