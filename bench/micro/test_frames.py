"""Frame headers: encoding (the send path) and parsing (the receive loop, header-bound).

The receive loop parses headers inline in `Connection._receive`, so parsing is measured
through it with frames whose payload costs next to nothing: per-frame cost = mean / 1000.

pytest bench/micro/test_frames.py --benchmark-enable --benchmark-only
"""

import os

import pytest

from fastws.assembler import UNBOUNDED
from fastws.protocol.connection import Connection
from fastws.protocol.frames import encode_close, encode_header, parse_close
from fastws.protocol.mask import unmask

BATCH = 1000
KEY = os.urandom(4)


@pytest.mark.parametrize(
    ("length", "kwargs"),
    [
        pytest.param(64, {}, id="7bit-table"),
        pytest.param(1024, {}, id="16bit"),
        pytest.param(1 << 20, {}, id="64bit"),
        pytest.param(64, {"fin": False}, id="not-final"),
        pytest.param(64, {"rsv1": True}, id="rsv1-deflate"),
        pytest.param(64, {"mask": KEY}, id="client-masked"),
    ],
)
def test_encode_header(benchmark, length: int, kwargs: dict) -> None:
    """One server (or client) frame header; the 7-bit unmasked final case is a table lookup."""
    header = benchmark(encode_header, 2, length, **kwargs)
    assert len(header) == {64: 2, 1024: 4, 1 << 20: 10}[length] + (4 if "mask" in kwargs else 0)


def _frames(opcode: int, size: int, n: int, fin_last_only: bool = False) -> memoryview:
    out = []
    for i in range(n):
        key = os.urandom(4)
        op = opcode if not fin_last_only or i == 0 else 0
        fin = not fin_last_only or i == n - 1
        out.append(encode_header(op, size, fin=fin, mask=key) + unmask(b"\x00" * size, key))
    return memoryview(b"".join(out))


def _feed(conn: Connection, data: memoryview) -> int:
    conn.receive_data(data)
    n = len(conn.events)
    conn.events = []
    return n


@pytest.mark.parametrize("size", [0, 1, 126])
def test_parse_headers(benchmark, size: int) -> None:
    """1,000 complete masked binary frames (7-bit lengths, and 16-bit at 126 B): the fast
    path's header parse dominates."""
    conn = Connection()
    assert benchmark(_feed, conn, _frames(2, size, BATCH)) == BATCH


def test_parse_fragment_headers(benchmark) -> None:
    """One message in 1,000 one-byte fragments: each header takes the checked slow path."""
    data = _frames(2, 1, BATCH, fin_last_only=True)
    conn = Connection(max_fragments=BATCH, assembler=UNBOUNDED)  # the clients' assembler
    assert benchmark(_feed, conn, data) == 1


def test_parse_pings(benchmark) -> None:
    """1,000 empty pings: control-frame headers, each answered with a queued pong."""
    data = _frames(9, 0, BATCH)
    conn = Connection()

    def run() -> int:
        conn.receive_data(data)
        n = len(conn.data_to_send())
        return n

    assert benchmark(run) > 0


def test_encode_close(benchmark) -> None:
    """A Close payload: code and reason (what every connection sends once)."""
    assert benchmark(encode_close, 1001, "going away") == b"\x03\xe9going away"


def test_parse_close(benchmark) -> None:
    """A received Close payload: code validity and UTF-8 reason checks."""
    assert benchmark(parse_close, b"\x03\xe8bye") == (1000, "bye")
