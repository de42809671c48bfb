"""Tricklers: clients that answer every keepalive ping but send one message so slowly that it
never completes. Keepalive alone never reaps them; --message-timeout closes them with 1008.

Each runs against a real server process while EchoProbe (the websockets library) echoes
throughout. Timeouts are scaled down so each test takes seconds; no test asserts a duration.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.hostile.probe import EchoProbe
from tests.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TIMEOUT,
    WireClient,
    decode_frame,
    encode_frame,
    parse_close,
)

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

ZERO_KEY = b"\x00\x00\x00\x00"
MESSAGE_TIMEOUT = 1.0
EVERY = 0.05  # seconds between two pieces of the trickle


def one_frame_byte_by_byte() -> Iterator[bytes]:
    """A 1 MiB binary frame: its header, then its payload one byte at a time."""
    frame = encode_frame(OP_BINARY, b"x" * (1 << 20), masking_key=ZERO_KEY)
    yield frame[:14]
    for i in range(14, len(frame)):
        yield frame[i : i + 1]


def endless_fragments() -> Iterator[bytes]:
    """A text message of one-byte fragments, each frame complete, the last one never sent."""
    yield encode_frame(OP_TEXT, b"a", fin=False, masking_key=ZERO_KEY)
    while True:
        yield encode_frame(OP_CONT, b"a", fin=False, masking_key=ZERO_KEY)


def trickle(client: WireClient, pieces: Iterator[bytes]) -> tuple[int | None, str, int]:
    """Send the next piece every EVERY seconds and answer every ping, until the server sends
    a Close frame; return its code and reason and the number of pings answered."""
    deadline = time.monotonic() + MESSAGE_TIMEOUT + TIMEOUT
    pings = 0
    due = time.monotonic()
    while True:
        assert time.monotonic() < deadline, "the trickler was never closed"
        wait = max(0.0, due - time.monotonic())
        if decode_frame(client.buffer) is not None or select.select([client.sock], [], [], wait)[0]:
            frame = client.recv_frame()
            if frame.opcode == OP_PING:
                client.send_frame(OP_PONG, frame.payload)
                pings += 1
            elif frame.opcode == OP_CLOSE:
                code, reason = parse_close(frame)
                return code, reason, pings
            continue
        client.send_raw(next(pieces))
        due = time.monotonic() + EVERY


@pytest.mark.parametrize(
    "pieces", [one_frame_byte_by_byte, endless_fragments], ids=["one-frame", "fragments"]
)
def test_trickled_message_is_closed_with_1008(start_server: ServerFactory, pieces: object) -> None:
    """A client that answers pings (so keepalive keeps it) but never completes its message,
    trickling either one frame's bytes or complete one-byte fragments, gets Close 1008 after
    --message-timeout, with a log line saying why; a legitimate client echoes throughout."""
    server = start_server(ping_interval=0.2, ping_timeout=2, message_timeout=MESSAGE_TIMEOUT)
    with EchoProbe(server) as probe, WireClient(server.port) as client:
        client.handshake()
        code, reason, pings = trickle(client, pieces())  # type: ignore[operator]
        client.assert_server_closes_tcp()
    assert code == 1008, (code, reason)
    assert "message incomplete" in reason
    assert pings >= 1, "keepalive never pinged: the test proves nothing about pings"
    log = server.wait_for_log("failed: 1008 message incomplete after")
    assert "message_timeout 1s" in log
    print(f"trickler: closed 1008 after answering {pings} pings; {probe.summary()}")


def test_message_timeout_works_without_keepalive_pings(start_server: ServerFactory) -> None:
    """With --ping-interval off the wheel still visits connections for message_timeout."""
    server = start_server(ping_interval="off", message_timeout=MESSAGE_TIMEOUT)
    with WireClient(server.port) as client:
        client.handshake()
        code, _, pings = trickle(client, endless_fragments())
    assert (code, pings) == (1008, 0)


def test_slow_message_that_completes_in_time_is_echoed(start_server: ServerFactory) -> None:
    """Messages whose fragments arrive over several keepalive ticks, each well within
    message_timeout, are delivered, also when together they take longer than message_timeout
    (the clock starts again with each message)."""
    server = start_server(ping_interval=0.1, ping_timeout=2, message_timeout=2)
    with WireClient(server.port) as client:
        client.handshake()
        for round_ in range(8):  # ~0.5 s each
            client.send_frame(OP_TEXT, b"s", fin=False)
            for _ in range(5):
                time.sleep(0.1)
                client.send_frame(OP_CONT, b"l", fin=False)
            client.send_frame(OP_CONT, str(round_).encode())
            assert client.recv_message() == (OP_TEXT, b"slllll" + str(round_).encode())
        client.echo()
