"""fastws.websocket: the handler API's receiving side over a real server and a real client
(the `websockets` library): what a handler that waits with timeouts, or by mistake from two
coroutines, gets."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from websockets.sync.client import connect

from fastws.protocol.frames import encode_header
from fastws.protocol.mask import unmask
from fastws.websocket import READ_AHEAD, READ_AHEAD_MIN, WebSocket
from tests.conftest import ServerFactory
from tests.wire import WireClient


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


class _Socket:
    """Records the SO_RCVLOWAT values a connection sets, with the read that set each."""

    def __init__(self) -> None:
        self.read = 0
        self.lowat: list[tuple[int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        self.lowat.append((self.read, value))


class _Transport:
    """Enough of a transport for receiving: its socket, and TLS or not."""

    def __init__(self, sock: _Socket, tls: bool = False) -> None:
        self.sock = sock
        self.tls = tls

    def get_extra_info(self, name: str) -> Any:
        return {"socket": self.sock, "sslcontext": object() if self.tls else None}.get(name)

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _receive_large_frame(
    tls: bool, size: int, read: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """A masked binary frame of `size` bytes fed to a server-side WebSocket in reads of at
    most `read` bytes (into get_buffer(), as the event loop does); the SO_RCVLOWAT values
    it set (with the read that set each) and what the frame lacked before each read."""
    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(_make_ws())
        sock = _Socket()
        ws.connection_made(_Transport(sock, tls))  # type: ignore[arg-type]
        ws._opened(b"")
        payload = os.urandom(size)
        key = os.urandom(4)
        data = encode_header(2, size, fin=True, mask=key) + unmask(payload, key)
        lacked = []
        pos = 0
        while pos < len(data):
            lacked.append(len(data) - pos)
            buf = ws.get_buffer(-1)
            n = min(len(buf), read, len(data) - pos)
            buf[:n] = data[pos : pos + n]
            del buf
            sock.read = len(lacked) - 1
            ws.buffer_updated(n)
            pos += n
        (message,) = ws._queue
        assert bytes(message) == payload
        return sock.lowat, lacked
    finally:
        loop.close()


async def _make_ws() -> WebSocket:
    return WebSocket(
        max_message_size=64 << 20,
        max_frame_size=None,
        max_fragments=1000,
        max_queue=1 << 30,
        write_limit=1 << 20,
        close_timeout=1.0,
        ping_interval=None,
        ping_timeout=None,
        client=False,
    )


def test_read_ahead_waits_for_no_more_than_the_frame_lacks() -> None:
    """While a large payload arrives, the socket's SO_RCVLOWAT asks the kernel to wake the
    connection for READ_AHEAD bytes at a time, never for more than half of what the frame
    still lacks after the read that set it (the peer may send nothing more before it gets an
    answer, and the connection keeps reading while the rest arrives), never for less than
    READ_AHEAD_MIN, and is 1 again once the frame is complete; under TLS (encrypted byte
    counts) never."""
    for size, read in ((5 * READ_AHEAD + 12_345, 700_001), (300_000, 65_536)):
        lowat, lacked = _receive_large_frame(False, size, read)
        values = [value for _, value in lowat]
        assert values and values[-1] == 1 and max(values) <= READ_AHEAD
        assert READ_AHEAD in values or size < 2 * READ_AHEAD
        assert all(value == 1 or value >= READ_AHEAD_MIN for value in values)
        assert lowat[-1][0] <= len(lacked) - 1  # back to 1 by the read that completed it
        for i, value in lowat:  # in force for the next read: at most half of what it lacked
            if i + 1 < len(lacked) and value > 1:
                assert value <= lacked[i + 1] // 2, (i, value, lacked[i + 1])
    assert _receive_large_frame(True, 3 * READ_AHEAD, 700_001)[0] == []


def test_read_ahead_with_a_slow_sender(start_server: ServerFactory) -> None:
    """A large message sent in pieces with pauses, the last smaller than READ_AHEAD: echoed
    whole (the read-ahead never waits for bytes that are not coming)."""
    server = start_server(app="tests.apps:echo")
    payload = os.urandom(3 * READ_AHEAD + 1000)
    key = os.urandom(4)
    frame = encode_header(2, len(payload), fin=True, mask=key) + unmask(payload, key)
    with WireClient(server.port) as client:
        client.handshake("/")
        for start in range(0, len(frame), 700_000):
            client.send_raw(frame[start : start + 700_000])
            time.sleep(0.05)
        opcode, echoed = client.recv_message()
    assert (opcode, echoed) == (2, payload)
