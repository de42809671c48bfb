"""Large binary messages in the protocol core, with the assembler it falls back to alone
(PlainAssembler: bytearrays, delivered as bytes) or one a test injects to watch the contract.

The kernel-facing contract is `payload_target()` (where the next bytes may be written) and
`payload_written(n)`; these tests play the kernel's part by writing into the target views.
The servers' assembler (mmap regions, memory budget) is tested in tests/test_assembler.py.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from fastws.protocol.assembly import PlainAssembler
from fastws.protocol.connection import (
    DIRECT_MIN,
    STREAM_CHUNK,
    Blocked,
    Chunk,
    Connection,
)

MiB = 1 << 20


def header(n: int, *, opcode: int = 2, fin: bool = True) -> tuple[bytes, bytes]:
    """A masked client frame header for `n` payload bytes, and its masking key."""
    key = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
    return head + key, key


def masked(payload: bytes, key: bytes) -> bytes:
    """Mask with numpy, independently of fastws.protocol.mask."""
    tiled = np.resize(np.frombuffer(key, np.uint8), len(payload))
    return (np.frombuffer(payload, np.uint8) ^ tiled).tobytes()


def write_like_the_kernel(conn: Connection, data: bytes, chunk: int) -> list[memoryview]:
    """Deliver `data` as the I/O layer would: into payload_target() when it offers one."""
    targets = []
    pos = 0
    while pos < len(data):
        target = conn.payload_target()
        if target is None:
            n = min(chunk, len(data) - pos)
            conn.receive_data(data[pos : pos + n])
        else:
            n = min(chunk, len(target), len(data) - pos)
            target[:n] = data[pos : pos + n]
            targets.append(target[:n])
            conn.payload_written(n)
        pos += n
    return targets


def take(conn: Connection) -> list[object]:
    events, conn.events = conn.events, []
    return events


def _client_payload(frame: object) -> object:
    assert isinstance(frame, tuple)
    return frame[1]


def _as_array(buffer: object) -> np.ndarray:
    return np.frombuffer(buffer, np.uint8)  # type: ignore[call-overload]


def test_client_masks_into_one_kept_buffer_once_the_last_was_written() -> None:
    """5.3 makes a client copy its payload once, to mask it. That copy goes into a buffer the
    connection keeps, reused only when the I/O layer says the last masked payload was
    written (`mask_buffer_free`): a frame still waiting to be written is never overwritten.
    Every frame unmasks to its own payload."""
    client = Connection(client=True)
    first, second, third = (os.urandom(256 * 1024) for _ in range(3))
    third = third[:100_000]

    frame_a = client.send_data(2, first)
    frame_b = client.send_data(2, second)  # frame_a not written yet: a new buffer
    a, b = _client_payload(frame_a), _client_payload(frame_b)
    assert not np.shares_memory(_as_array(a), _as_array(b))
    a_bytes = bytes(a)  # type: ignore[call-overload]

    client.mask_buffer_free = True  # the I/O layer: everything so far has been written
    frame_c = client.send_data(2, third)
    assert np.shares_memory(_as_array(b), _as_array(_client_payload(frame_c)))
    assert not client.mask_buffer_free  # taken again until the I/O layer says otherwise
    assert bytes(a) == a_bytes  # the buffer of a frame nobody said was written is untouched

    server = Connection(max_message_size=1 << 20)
    for frame, payload in ((frame_a, first), (frame_c, third)):
        assert isinstance(frame, tuple)
        server.receive_data(frame[0] + bytes(frame[1]))
        (event,) = take(server)
        assert event == payload


def test_client_keeps_no_masking_buffer_above_the_limit() -> None:
    """A client does not hold on to the buffer of a very large message (MASK_BUFFER_MAX):
    its memory goes once the frame is written."""
    from fastws.protocol.connection import MASK_BUFFER_MAX

    client = Connection(client=True)
    client.send_data(2, b"x" * (MASK_BUFFER_MAX + 1))
    client.mask_buffer_free = True
    big = _client_payload(client.send_data(2, b"y" * (MASK_BUFFER_MAX + 1)))
    small = _client_payload(client.send_data(2, b"z" * 8192))
    assert not np.shares_memory(_as_array(big), _as_array(small))


def test_alone_a_large_frame_is_written_in_place_and_delivered_as_bytes() -> None:
    """Without an injected assembler the core still takes a large frame in place: each
    `payload_target()` is the next stretch of one buffer, unmasked where it was written, and
    the message comes out as `bytes` (the default PlainAssembler)."""
    payload = os.urandom(3 * MiB + 5)
    head, key = header(len(payload))
    conn = Connection()
    assert isinstance(conn.assembler, PlainAssembler)
    conn.receive_data(head)
    targets = write_like_the_kernel(conn, masked(payload, key), chunk=100_003)
    assert len(targets) > 30
    assert len({id(t.obj) for t in targets}) == 1  # one buffer, filled in order
    assert take(conn) == [payload]


def test_alone_fragments_and_streams_are_bytes() -> None:
    """Fragments (complete or written in place) assemble into one `bytes`; with `streaming`
    set, a frame arrives as Chunks of at most STREAM_CHUNK bytes each."""
    fragments = [os.urandom(n) for n in (10, 2 * MiB + 3, 70_000, 1)]
    conn = Connection()
    for i, fragment in enumerate(fragments):
        head, key = header(len(fragment), opcode=0 if i else 2, fin=i == len(fragments) - 1)
        if len(fragment) > DIRECT_MIN:
            conn.receive_data(head)
            write_like_the_kernel(conn, masked(fragment, key), chunk=65_537)
        else:
            conn.receive_data(head + masked(fragment, key))
    assert take(conn) == [b"".join(fragments)]

    payload = os.urandom(2 * STREAM_CHUNK + 7)
    head, key = header(len(payload))
    conn.streaming = True
    conn.receive_data(head)
    write_like_the_kernel(conn, masked(payload, key), chunk=300_007)
    chunks = take(conn)
    assert all(isinstance(c, Chunk) and type(c.data) is bytes for c in chunks)
    assert [c.last for c in chunks] == [False, False, True]  # type: ignore[attr-defined]
    assert b"".join(c.data for c in chunks) == payload  # type: ignore[attr-defined]


class Gate(PlainAssembler):
    """An assembler that keeps new messages waiting for memory until `open`, and records
    what the core asks of it."""

    def __init__(self) -> None:
        self.open = False
        self.calls: list[tuple[object, ...]] = []

    def admit(self, length: int, whole: bool, patient: bool) -> Blocked | None:
        self.calls.append(("admit", length, whole, patient))
        return None if self.open else Blocked.MEMORY

    def begin(self, length: int, whole: bool, lazy: bool, limit: int) -> bytearray:
        self.calls.append(("begin", length, whole, lazy, limit))
        return bytearray(length)

    def release(self, buf: object) -> None:
        self.calls.append(("release", len(buf) if isinstance(buf, bytearray) else None))


def test_the_assembler_admits_each_new_message_and_the_core_waits_for_it() -> None:
    """A new binary message arriving in pieces is admitted by the injected assembler first:
    while it answers MEMORY the core is `blocked`, offers no target and holds the bytes; on
    `resume()` it asks again, and once admitted parses the held bytes into the buffer that
    `begin()` gave. Frames complete in one read never ask (the small-message path)."""
    gate = Gate()
    conn = Connection(assembler=gate, max_message_size=8 * MiB)
    conn.receive_data(header(5)[0] + b"x" * 5)  # complete in the read: no admission
    payload = os.urandom(2 * MiB)
    head, key = header(len(payload))
    data = masked(payload, key)
    conn.receive_data(head + data[:1000])
    assert conn.blocked is Blocked.MEMORY and conn.payload_target() is None
    assert gate.calls == [("admit", 2 * MiB, True, False)]
    assert not conn.resume()
    gate.open = True
    assert conn.resume() and conn.blocked is None
    assert gate.calls[-1] == ("begin", 2 * MiB, True, False, 8 * MiB)
    write_like_the_kernel(conn, data[1000:], chunk=1 << 20)
    assert [len(m) for m in take(conn)] == [5, 2 * MiB]  # type: ignore[arg-type]


def test_a_sliced_reader_lets_the_assembler_wait_a_loop_iteration() -> None:
    """`patient` tells the assembler the I/O layer resumes on a later iteration (slicing on),
    which is when it may answer REGION; a dropped message's buffer goes back to it."""
    gate = Gate()
    gate.open = True
    conn = Connection(assembler=gate)
    conn.slice_frames = 1024
    head, _ = header(3 * MiB, fin=False)
    conn.receive_data(head + b"\x00" * 100)
    assert gate.calls == [
        ("admit", 3 * MiB, False, True),
        ("begin", 3 * MiB, False, True, conn.max_message_size),
    ]
    conn.receive_eof()
    assert gate.calls[-1] == ("release", 3 * MiB)


def test_whole_fragments_in_one_read_assemble_exactly() -> None:
    """Fragments of INTO_MIN bytes and more that arrive whole inside one read are unmasked
    straight into the message's buffer (`_fragment_into`): binary messages assemble exactly,
    a ping between them is answered, and text, streaming and tiny fragments take the general
    path with the same result."""
    from fastws.protocol.connection import INTO_MIN

    def wire(parts: list[bytes], opcode: int, ping_after: int = -1) -> bytes:
        out = b""
        for i, part in enumerate(parts):
            head, key = header(len(part), opcode=0 if i else opcode, fin=i == len(parts) - 1)
            out += head + masked(part, key)
            if i == ping_after:
                head, key = header(4, opcode=9)
                out += head + masked(b"ping", key)
        return out

    sizes = (INTO_MIN, 16_384, 10, INTO_MIN + 1, 131_000, 7)
    parts = [os.urandom(n) for n in sizes]
    conn = Connection()
    conn.receive_data(wire(parts, 2, ping_after=1))
    assert take(conn) == [b"".join(parts)]
    assert b"".join(conn.data_to_send()) == b"\x8a\x04ping"  # the ping, answered

    text = ["é" * (INTO_MIN // 2), "x" * INTO_MIN, "ü"]
    conn = Connection()
    conn.receive_data(wire([t.encode() for t in text], 1))
    assert take(conn) == ["".join(text)]

    conn = Connection()
    conn.streaming = True
    conn.receive_data(wire(parts, 2))
    chunks = take(conn)
    assert b"".join(c.data if isinstance(c, Chunk) else c for c in chunks) == b"".join(parts)


def test_runs_of_fragments_in_one_read_assemble_exactly_and_keep_every_limit() -> None:
    """After a whole fragment of INTO_MIN bytes or more, the continuation frames that follow
    whole in the same read are taken in one run (`_fragments_into`, the C kernel): the
    message assembles exactly whatever the read size, and every check the parser makes per
    frame still fails the connection at the frame that breaks it — the fragment count, the
    message and frame limits, reserved bits — and the slicing quota still counts each frame."""
    from fastws.protocol.connection import INTO_MIN
    from tests.protocol.test_connection import client_frame, failure, feed

    first = os.urandom(INTO_MIN)
    rest = [os.urandom(n) for n in (16_384,) * 40 + (1, 0, 125, 126, 70_000, 7)]
    wire = client_frame(2, first, fin=False)
    wire += b"".join(client_frame(0, p, fin=i == len(rest) - 1) for i, p in enumerate(rest))
    whole = first + b"".join(rest)
    for step in (None, 131_000, 262_144, 65_536):
        assert feed(Connection(max_message_size=64 * MiB), wire, step) == [whole]

    class Counting(Connection):
        headers = 0

        def _check_header(self, b0: int, b1: int, length: int, mask: bytes | None) -> int:
            Counting.headers += 1
            return super()._check_header(b0, b1, length, mask)

    assert feed(Counting(max_message_size=64 * MiB), wire) == [whole]
    from fastws.protocol import connection

    if connection._c_unmask_fragments is not None:  # the run is the C kernel's
        assert Counting.headers < 5, "the parser judged the fragments one by one"

    def run(count: int, size: int = 16_384, **changes: int) -> bytes:
        frames = [client_frame(0, b"x" * size, fin=False) for _ in range(count)]
        for index, value in changes.items():
            frames[int(index[1:])] = client_frame(0, b"x" * size, fin=False, rsv=value)
        return client_frame(2, first, fin=False) + b"".join(frames) + client_frame(0, b"end")

    # 22 frames: the first, 20, and the final one
    assert failure(Connection(max_fragments=21), run(20)) == (1009, "too many fragments")
    assert feed(Connection(max_fragments=22), run(20)) == [first + b"x" * 16_384 * 20 + b"end"]
    code, reason = failure(Connection(max_message_size=INTO_MIN + 16_384 * 5), run(20))
    assert (code, reason.split(" ")[0]) == (1009, "message")
    code, reason = failure(Connection(max_frame_size=16_383, max_message_size=MiB), run(3))
    assert code == 1009 and "frame limit" in reason
    assert failure(Connection(), run(20, r7=4)) == (1002, "reserved bits set")

    conn = Connection()
    conn.slice_frames = 5
    conn.receive_data(run(20))
    slices = 1
    while conn.blocked is Blocked.SLICE:
        assert not conn.events  # the message is not complete before its last slice
        conn.resume()
        slices += 1
    assert take(conn) == [first + b"x" * 16_384 * 20 + b"end"]
    assert slices == 5  # 22 frames, 5 per slice
