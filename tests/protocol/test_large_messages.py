"""Large binary messages in the protocol core: one region per message, written in place.

The kernel-facing contract is `payload_target()` (where the next bytes may be written) and
`payload_written(n)`; these tests play the kernel's part by writing into the target views.
"""

from __future__ import annotations

import gc
import os
import struct

import numpy as np
import pytest

from fastws.buffers import MMAP_MIN, Budget, Region, RegionCache
from fastws.message import Message, MessageReleased
from fastws.protocol.connection import DIRECT_MIN, STREAM_CHUNK, Chunk, Connection, Failure

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


def test_large_frame_is_delivered_in_the_memory_the_kernel_wrote() -> None:
    """A 4 MiB frame: the bytes written at payload_target() are the Message's memory (the
    same addresses, unmasked in place), not a copy."""
    payload = os.urandom(4 * MiB)
    head, key = header(len(payload))
    conn = Connection()
    conn.receive_data(head)
    targets = write_like_the_kernel(conn, masked(payload, key), chunk=100_003)
    (message,) = take(conn)
    assert isinstance(message, Message)
    assert message == payload
    array = message.array()
    assert all(np.shares_memory(array, np.frombuffer(t, np.uint8)) for t in targets)


def test_fragmented_large_message_is_assembled_in_one_region() -> None:
    """Fragments (some complete in one read, some written in place) land one after the other
    in one buffer; once the message outgrows MMAP_MIN it moves once into a reserved region,
    where every later fragment is written in place and the message is delivered from."""
    fragments = [os.urandom(n) for n in (1000, 300_000, 700_000, 50, 1_500_000, 3, 2_000_000)]
    conn = Connection()
    targets: list[list[memoryview]] = []
    for i, fragment in enumerate(fragments):
        head, key = header(len(fragment), opcode=0 if i else 2, fin=i == len(fragments) - 1)
        if len(fragment) > DIRECT_MIN:
            conn.receive_data(head)
            targets.append(write_like_the_kernel(conn, masked(fragment, key), chunk=65_537))
        else:
            conn.receive_data(head + masked(fragment, key))
            targets.append([])
    (message,) = take(conn)
    assert isinstance(message, Message)
    assert message == b"".join(fragments)
    assert isinstance(message._buffer, Region)
    array = message.array()
    for after_the_move in (targets[4], targets[6]):  # fragments once past MMAP_MIN
        assert all(np.shares_memory(array, np.frombuffer(t, np.uint8)) for t in after_the_move)


def test_small_fragmented_message_is_bytes() -> None:
    """Below MMAP_MIN a reassembled message is plain bytes, like any small message."""
    conn = Connection()
    parts = [b"a" * 1000, b"b" * 70_000, b"c"]
    for i, part in enumerate(parts):
        head, key = header(len(part), opcode=0 if i else 2, fin=i == 2)
        conn.receive_data(head + masked(part, key))
    assert sum(map(len, parts)) < MMAP_MIN
    assert take(conn) == [b"".join(parts)]


def test_new_large_message_waits_for_the_budget() -> None:
    """Over budget, a new large message is not allocated: the connection is `blocked` until
    memory is released, then it is admitted and completes from the bytes held back."""
    budget = Budget(8 * MiB)
    first, second = Connection(budget=budget), Connection(budget=budget)
    a, b = os.urandom(6 * MiB), os.urandom(6 * MiB)
    head_a, key_a = header(len(a))
    first.receive_data(head_a + masked(a, key_a)[:1000])
    assert budget.held == 6 * MiB and not first.blocked
    head_b, key_b = header(len(b))
    woken: list[bool] = []
    second.receive_data(head_b + masked(b, key_b)[:5000])
    assert second.blocked and budget.held == 6 * MiB
    assert second.payload_target() is None  # nothing allocated for it
    budget.wait(lambda: woken.append(True))
    assert not second.resume()
    write_like_the_kernel(first, masked(a, key_a)[1000:], chunk=1 << 20)
    (message_a,) = take(first)
    assert message_a == a
    message_a.release()
    assert woken == [True] and budget.held == 0
    assert second.resume() and not second.blocked
    write_like_the_kernel(second, masked(b, key_b)[5000:], chunk=1 << 20)
    (message_b,) = take(second)
    assert message_b == b
    message_b.release()
    assert budget.held == 0


def test_a_message_larger_than_the_budget_is_admitted_alone() -> None:
    """A message over the budget (but within max_message_size) is not refused forever: it is
    admitted when nothing else holds memory."""
    budget = Budget(2 * MiB)
    conn = Connection(budget=budget)
    payload = os.urandom(3 * MiB)
    head, key = header(len(payload))
    conn.receive_data(head)
    assert not conn.blocked
    write_like_the_kernel(conn, masked(payload, key), chunk=1 << 20)
    (message,) = take(conn)
    assert message == payload
    message.release()
    assert budget.held == 0


def test_failure_mid_message_returns_the_memory() -> None:
    """A protocol error half-way through a large message frees its region and budget."""
    budget = Budget(64 * MiB)
    conn = Connection(budget=budget)
    head, key = header(4 * MiB, fin=False)
    conn.receive_data(head + masked(os.urandom(4 * MiB), key))
    assert budget.held >= 4 * MiB
    conn.receive_data(header(10, opcode=2)[0] + b"x" * 10)  # 5.4: new message inside one
    assert isinstance(take(conn)[-1], Failure)
    gc.collect()
    assert budget.held == 0


def test_released_message_raises_and_views_stay_valid() -> None:
    """release() frees the region; using the message after raises MessageReleased; a view
    taken before keeps the memory alive and readable (never freed memory)."""
    budget = Budget(64 * MiB)
    conn = Connection(budget=budget)
    payload = os.urandom(2 * MiB)
    head, key = header(len(payload))
    conn.receive_data(head)
    write_like_the_kernel(conn, masked(payload, key), chunk=1 << 20)
    (message,) = take(conn)
    view = message.array()
    message.release()
    assert message.released
    with pytest.raises(MessageReleased):
        message.data  # noqa: B018
    assert view.tobytes() == payload  # still mapped: the view holds it
    assert budget.held == 2 * MiB
    del view
    gc.collect()
    assert budget.held == 0


def test_region_of_a_message_is_unmapped_on_release() -> None:
    """Without views, release() unmaps the region at once."""
    conn = Connection()
    payload = os.urandom(MMAP_MIN)
    head, key = header(len(payload))
    conn.receive_data(head)
    write_like_the_kernel(conn, masked(payload, key), chunk=1 << 20)
    (message,) = take(conn)
    region = message._buffer
    assert isinstance(region, Region)
    message.release()
    assert region.closed


def test_streaming_delivers_a_large_frame_in_chunks_written_in_place() -> None:
    """With `streaming` set before a message starts, a 5.5 MiB frame arrives as Chunk events
    of at most STREAM_CHUNK bytes, in order, each in the memory the kernel wrote."""
    payload = os.urandom(5 * MiB + MiB // 2)
    head, key = header(len(payload))
    conn = Connection()
    conn.streaming = True
    conn.receive_data(head)
    targets = write_like_the_kernel(conn, masked(payload, key), chunk=300_007)
    chunks = take(conn)
    assert all(isinstance(c, Chunk) for c in chunks)
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]  # type: ignore[attr-defined]
    assert all(len(c.data) <= STREAM_CHUNK for c in chunks)  # type: ignore[attr-defined]
    assert b"".join(bytes(c.data) for c in chunks) == payload  # type: ignore[attr-defined]
    arrays = [c.data.array() for c in chunks]  # type: ignore[attr-defined]
    for target in targets:
        assert any(np.shares_memory(a, np.frombuffer(target, np.uint8)) for a in arrays)


def _stream(
    conn: Connection, head: bytes, data: bytes, release: bool
) -> tuple[list[Message], list[object]]:
    """Stream one frame in reads of 500,001 bytes, releasing each piece on arrival if asked;
    the pieces and the buffers they were written into."""
    conn.streaming = True
    conn.receive_data(head)
    pieces: list[Message] = []
    buffers: list[object] = []
    pos = 0
    while pos < len(data):
        if not buffers or conn._mbuf is not buffers[-1]:
            buffers.append(conn._mbuf)
        target = conn.payload_target()
        assert target is not None
        n = min(500_001, len(target), len(data) - pos)
        target[:n] = data[pos : pos + n]
        del target
        conn.payload_written(n)
        pos += n
        for chunk in take(conn):
            assert isinstance(chunk, Chunk)
            pieces.append(chunk.data)
            if release:
                chunk.data.release()
    return pieces, buffers


def test_streaming_reuses_released_pieces_and_never_a_held_one() -> None:
    """With a RegionCache, a piece the application released lends its pages to a later
    piece (no fresh page faults per MiB); pieces still held are never written over."""
    payload = os.urandom(6 * MiB)
    head, key = header(len(payload))
    data = masked(payload, key)
    conn = Connection(budget=Budget(1 << 30, RegionCache(64 * MiB)))
    held, first = _stream(conn, head, data, release=False)
    assert b"".join(bytes(p) for p in held) == payload
    assert len(held) == len(first) == 6
    assert len({id(b) for b in first}) == 6  # all held at once: six regions
    for piece in held:
        piece.release()
    released, second = _stream(conn, head, data, release=True)
    assert len(released) == 6
    # released on arrival: the second message was written into the first one's regions
    assert all(any(b is a for a in first) for b in second)
    assert len({id(b) for b in second}) <= 2


def test_streaming_a_fragmented_message_keeps_order_across_frames() -> None:
    """Fragments, complete or arriving in pieces, stream out in order; the last chunk ends
    the message and the next message is assembled normally once streaming is off."""
    fragments = [os.urandom(n) for n in (10, 2 * MiB + 3, 70_000, 1, 1_500_000)]
    conn = Connection()
    conn.streaming = True
    for i, fragment in enumerate(fragments):
        head, key = header(len(fragment), opcode=0 if i else 2, fin=i == len(fragments) - 1)
        if len(fragment) > DIRECT_MIN:
            conn.receive_data(head)
            write_like_the_kernel(conn, masked(fragment, key), chunk=123_457)
        else:
            conn.receive_data(head + masked(fragment, key))
    chunks = take(conn)
    assert chunks[-1].last and not any(c.last for c in chunks[:-1])  # type: ignore[attr-defined]
    assert b"".join(bytes(c.data) for c in chunks) == b"".join(fragments)  # type: ignore[attr-defined]
    assert not conn.streaming  # a request covers one message
    head, key = header(3 * MiB)
    payload = os.urandom(3 * MiB)
    conn.receive_data(head)
    write_like_the_kernel(conn, masked(payload, key), chunk=1 << 20)
    (message,) = take(conn)
    assert isinstance(message, Message) and message == payload


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
        assert (event.data if isinstance(event, Message) else event) == payload


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


@pytest.mark.parametrize("let_go", [True, False])
def test_a_region_still_held_by_a_write_is_waited_for_one_iteration(let_go: bool) -> None:
    """An echo releases a message while its transport still holds the region (the write
    lets go a moment later). The next message of that size then waits one loop iteration
    (`blocked`, `region_wait`: the I/O layer resumes on the next one) and takes that region
    once it is free, instead of mapping a second one (peak memory: one message, not two).
    A region still held after that iteration is never written over: a new one is mapped."""
    conn = Connection(budget=Budget(1 << 30, RegionCache(64 * MiB)))
    conn.slice_frames = 1024  # an I/O layer that resumes on a later iteration
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    head, key = header(len(first))
    write_like_the_kernel(conn, head + masked(first, key), 256 * 1024)
    (message,) = take(conn)
    assert isinstance(message, Message)
    region = message.data.obj
    writing = memoryview(message.data)  # the transport's hold on the echo being written
    message.release()

    head, key = header(len(second))
    data = head + masked(second, key)
    conn.receive_data(data[:300_000])
    assert conn.blocked and conn.region_wait and not take(conn)
    if let_go:
        writing.release()  # the write completed in the meantime
    assert conn.resume()
    assert not conn.blocked and not conn.region_wait
    write_like_the_kernel(conn, data[300_000:], 256 * 1024)
    (again,) = take(conn)
    assert isinstance(again, Message) and again == second
    assert (again.data.obj is region) is let_go
    if not let_go:
        assert bytes(writing) == first  # what the transport still writes is untouched
