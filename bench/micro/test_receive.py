"""The per-message receive path of a connection, fed from a byte buffer (no sockets).

pytest bench/micro --benchmark-enable --benchmark-only --benchmark-autosave
pytest bench/micro --benchmark-enable --benchmark-only --benchmark-compare
"""

import os

import pytest

from fastws.assembler import UNBOUNDED, BytesAssembler, RegionAssembler
from fastws.buffers import Budget, BytesBuffer, RegionCache
from fastws.message import Message
from fastws.protocol.connection import Connection
from fastws.protocol.frames import encode_header
from fastws.protocol.mask import unmask


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = os.urandom(4)
    return encode_header(opcode, len(payload), fin=fin, mask=key) + unmask(payload, key)


BATCH = 1000


def _run(conn: Connection, data: memoryview) -> int:
    conn.receive_data(data)
    n = len(conn.events)
    conn.events = []
    return n


@pytest.mark.parametrize(("kind", "size"), [("text", 64), ("binary", 64), ("binary", 1024)])
def test_receive_batch(benchmark, kind: str, size: int) -> None:
    """1,000 pipelined client frames in one read: cost per message = mean / 1000."""
    opcode, payload = (1, b"x" * size) if kind == "text" else (2, os.urandom(size))
    data = memoryview(b"".join(client_frame(opcode, payload) for _ in range(BATCH)))
    conn = Connection()
    assert benchmark(_run, conn, data) == BATCH


def test_receive_one(benchmark) -> None:
    """One 64-byte text frame per read: the request/response (latency) case."""
    data = memoryview(client_frame(1, b"x" * 64))
    conn = Connection()
    assert benchmark(_run, conn, data) == 1


def test_receive_fragmented(benchmark) -> None:
    """A 64 KiB binary message in 64 fragments of 1 KiB."""
    parts = [os.urandom(1024) for _ in range(64)]
    data = memoryview(
        b"".join(client_frame(2 if i == 0 else 0, p, i == 63) for i, p in enumerate(parts))
    )
    conn = Connection(assembler=UNBOUNDED)  # the clients' assembler (a server's: budgeted)
    assert benchmark(_run, conn, data) == 1


def _receive_in_reads(conn: Connection, data: memoryview, read: int) -> int:
    """Feed `data` in reads of `read` bytes through receive_data (the shared buffer's path:
    the frames here are smaller than a read), release the message; return the events."""
    for pos in range(0, len(data), read):
        conn.receive_data(data[pos : pos + read])
    events, conn.events = conn.events, []
    for event in events:
        if isinstance(event, Message):
            event.release()
    return len(events)


@pytest.mark.parametrize("fragment", [16_384, 131_000])
def test_receive_fragmented_in_reads(benchmark, fragment: int) -> None:
    """A 1 MiB binary message in fragments of 16 KiB (WebSocket-Node's client) or 131,000
    bytes (Chromium), in 256 KiB reads, with a server's assembler: the whole fragments of a
    read are unmasked into the message's buffer in one run (`_fragments_into`)."""
    payload = os.urandom(1 << 20)
    pieces = [payload[i : i + fragment] for i in range(0, len(payload), fragment)]
    data = memoryview(
        b"".join(
            client_frame(2 if i == 0 else 0, p, i == len(pieces) - 1) for i, p in enumerate(pieces)
        )
    )
    conn = Connection(
        max_message_size=64 << 20,
        assembler=RegionAssembler(Budget(1 << 30, RegionCache(64 << 20))),
    )
    assert benchmark(_receive_in_reads, conn, data, 256 << 10) == 1


def _kernel_read(conn: Connection, frame: memoryview, pos: int, read: int) -> int:
    """One read of up to `read` bytes of `frame` from `pos` "by the kernel" (a copy here)
    straight into payload_target(); returns the new position."""
    target = conn.payload_target()
    assert target is not None
    k = min(read, len(target), len(frame) - pos)
    target[:k] = frame[pos : pos + k]
    conn.payload_written(k)
    return pos + k


def _large_message(conn: Connection, frame: memoryview, first: int, read: int) -> Message:
    """What WebSocket.get_buffer/buffer_updated do for a large frame: the first read (header
    and the start of the payload) is parsed from the shared buffer, the rest is written by
    "the kernel" (a copy here) at payload_target() in reads of `read` bytes."""
    conn.receive_data(frame[:first])
    pos = first
    while not conn.events:
        pos = _kernel_read(conn, frame, pos, read)
    (message,) = conn.events
    conn.events = []
    assert isinstance(message, Message)
    return message


def _receive_large(conn: Connection, frame: memoryview, first: int, read: int) -> int:
    """_large_message, released."""
    message = _large_message(conn, frame, first, read)
    size = len(message)
    message.release()
    return size


@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_receive_large(benchmark, size: int) -> None:
    """A large binary frame received in place: 256 KiB through the shared receive buffer,
    then reads of 1,000,003 bytes (odd sizes, as the kernel returns them) straight into the
    message's region, each unmasked where it landed; regions recycled as in a server."""
    frame = memoryview(client_frame(2, os.urandom(size)))
    conn = Connection(
        max_message_size=size, assembler=RegionAssembler(Budget(1 << 30, RegionCache(64 << 20)))
    )
    assert benchmark(_receive_large, conn, frame, 256 * 1024, 1_000_003) == size


def _receive_large_bytes(conn: Connection, frame: memoryview, first: int, read: int) -> int:
    """_large_message, then what fastws.asgi's receive() makes of it: bytes (taken where it
    was received, or copied out of its region, which goes back to the cache)."""
    message = _large_message(conn, frame, first, read)
    with message:
        buffer = message.buffer
        data = buffer.take() if type(buffer) is BytesBuffer else message.tobytes()
    return len(data)


@pytest.mark.parametrize("assembler", ["region-copy", "bytes"])
@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_receive_large_as_bytes(benchmark, size: int, assembler: str) -> None:
    """test_receive_large delivered as ASGI's bytes: into a region then copied (region-copy,
    RegionAssembler: before), or straight into the bytes delivered (BytesAssembler)."""
    frame = memoryview(client_frame(2, os.urandom(size)))
    kind = BytesAssembler if assembler == "bytes" else RegionAssembler
    conn = Connection(max_message_size=size, assembler=kind(Budget(1 << 30, RegionCache(64 << 20))))
    assert benchmark(_receive_large_bytes, conn, frame, 256 * 1024, 1_000_003) == size


def _receive_stream(conn: Connection, frame: memoryview, first: int, read: int) -> int:
    """_receive_large in streaming mode (ws.stream()): each piece released when it comes."""
    conn.streaming = True
    conn.receive_data(frame[:first])
    pos = first
    size = 0
    while True:
        for chunk in conn.events:
            size += len(chunk.data)
            chunk.data.release()
            if chunk.last:
                conn.events = []
                return size
        conn.events = []
        pos = _kernel_read(conn, frame, pos, read)


def test_receive_stream(benchmark) -> None:
    """A 16 MiB binary frame received with streaming on: 1 MiB pieces, as ws.stream() gets
    them, in reads of 1,000,003 bytes."""
    size = 16 << 20
    frame = memoryview(client_frame(2, os.urandom(size)))
    conn = Connection(
        max_message_size=size, assembler=RegionAssembler(Budget(1 << 30, RegionCache(64 << 20)))
    )
    assert benchmark(_receive_stream, conn, frame, 256 * 1024, 1_000_003) == size


@pytest.mark.parametrize("size", [64, 1024, 65536])
def test_send_binary(benchmark, size: int) -> None:
    """Framing a server message: header lookup/pack, and join or (header, payload)."""
    conn = Connection()
    payload = os.urandom(size)
    benchmark(conn.send_data, 2, payload)


def _client_send(conn: Connection, payload: bytes) -> None:
    conn.mask_buffer_free = True  # what the I/O layer says once the socket took the last one
    conn.send_data(2, payload)


@pytest.mark.parametrize("size", [65536, 1 << 20, 16 << 20])
def test_client_send_binary(benchmark, size: int) -> None:
    """Framing a client message: masking (5.3) copies the payload once, into the buffer the
    connection keeps for it (a fresh one per message before)."""
    conn = Connection(client=True)
    payload = os.urandom(size)
    benchmark(_client_send, conn, payload)
