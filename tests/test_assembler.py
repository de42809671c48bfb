"""Large binary messages through RegionAssembler (the assembler the servers and clients
inject into the protocol core): one region per message, written in place by "the kernel",
delivered as a zero-copy Message, admitted against the worker's memory budget.

The kernel-facing contract is the core's `payload_target()` (where the next bytes may be
written) and `payload_written(n)`; these tests play the kernel's part by writing into the
target views.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from fastws.assembler import BytesAssembler, RegionAssembler
from fastws.buffers import MMAP_MIN, Budget, BytesBuffer, Region, RegionCache
from fastws.message import Message, MessageReleased
from fastws.protocol.accel import speedups
from fastws.protocol.connection import DIRECT_MIN, STREAM_CHUNK, Chunk, Connection, Failure

from .protocol.test_large_messages import header, masked, take, write_like_the_kernel

MiB = 1 << 20


def region_connection(budget: Budget | None = None) -> Connection:
    """A server-side core with the assembler a server gives it."""
    return Connection(assembler=RegionAssembler(budget))


def test_large_frame_is_delivered_in_the_memory_the_kernel_wrote() -> None:
    """A 4 MiB frame: the bytes written at payload_target() are the Message's memory (the
    same addresses, unmasked in place), not a copy."""
    payload = os.urandom(4 * MiB)
    head, key = header(len(payload))
    conn = region_connection()
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
    conn = region_connection()
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


def test_a_browsers_fragments_start_in_a_region() -> None:
    """On a server (regions recycled through its cache), a fragmented message whose first
    fragment is RESERVE_FROM bytes or more (Chromium sends 131,000-byte ones) is assembled in
    a reservation from the start: every fragment is written in place where the message is
    delivered from (no growth in a bytearray, no move at MMAP_MIN), and it is a `Message`
    even when it ends below MMAP_MIN. Without a cache (a client) a message under MMAP_MIN
    stays in a bytearray: bytes, no region mapped and faulted in for it."""
    from fastws.assembler import RESERVE_FROM

    for total in (7 * 131_000 + 50, 3 * MMAP_MIN):
        payload = os.urandom(total)
        sizes = [131_000] * (total // 131_000) + [total % 131_000]
        assert sizes[0] >= RESERVE_FROM
        conn = region_connection(Budget(1 << 30, RegionCache(64 * MiB)))
        targets: list[memoryview] = []
        done = 0
        for i, size in enumerate(sizes):
            head, key = header(size, opcode=0 if i else 2, fin=i == len(sizes) - 1)
            conn.receive_data(head)
            part = masked(payload[done : done + size], key)
            targets += write_like_the_kernel(conn, part, chunk=65_537)
            done += size
        (message,) = take(conn)
        assert isinstance(message, Message) and isinstance(message._buffer, Region)
        assert message == payload
        array = message.array()
        assert targets and all(np.shares_memory(array, np.frombuffer(t, np.uint8)) for t in targets)

    conn = region_connection()  # no budget, no cache: a client's
    parts = [os.urandom(131_000), os.urandom(5)]
    for i, part in enumerate(parts):
        head, key = header(len(part), opcode=0 if i else 2, fin=i == 1)
        conn.receive_data(head + masked(part, key))
    (message,) = take(conn)
    assert type(message) is bytes and message == b"".join(parts)


def test_small_fragmented_message_is_bytes() -> None:
    """Below MMAP_MIN a reassembled message is plain bytes, like any small message."""
    conn = region_connection()
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
    first, second = region_connection(budget), region_connection(budget)
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
    conn = region_connection(budget)
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
    conn = region_connection(budget)
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
    conn = region_connection(budget)
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
    conn = region_connection()
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
    conn = region_connection()
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
    conn = region_connection(Budget(1 << 30, RegionCache(64 * MiB)))
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
    conn = region_connection()
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


@pytest.mark.parametrize("let_go", [True, False])
def test_a_region_still_held_by_a_write_is_waited_for_one_iteration(let_go: bool) -> None:
    """An echo releases a message while its transport still holds the region (the write
    lets go a moment later). The next message of that size then waits one loop iteration
    (`blocked`, `region_wait`: the I/O layer resumes on the next one) and takes that region
    once it is free, instead of mapping a second one (peak memory: one message, not two).
    A region still held after that iteration is never written over: a new one is mapped."""
    conn = region_connection(Budget(1 << 30, RegionCache(64 * MiB)))
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


# -- BytesAssembler: messages delivered as bytes (fastws.asgi) ----------------------------------


def bytes_connection(budget: Budget | None = None) -> Connection:
    """A server-side core assembling as fastws.asgi does for an application that gets bytes."""
    return Connection(assembler=BytesAssembler(budget))


def _delivered(message: object) -> bytes:
    """What fastws.asgi hands the application (Session._large): the bytes taken, the charge
    given back."""
    if type(message) is bytes:
        return message
    assert isinstance(message, Message) and type(message.buffer) is BytesBuffer
    with message:
        return message.buffer.take()


@pytest.mark.parametrize("size", [DIRECT_MIN + 1, 200_000, 4 * MiB])
def test_a_frame_is_received_into_the_bytes_delivered(size: int) -> None:
    """A message in one frame is written by "the kernel" straight into the `bytes` the
    application gets and unmasked there: the delivered object is that memory, not a copy of
    a region (the same addresses as the targets written)."""
    budget = Budget(64 * MiB, RegionCache(64 * MiB))
    payload = os.urandom(size)
    head, key = header(size)
    conn = bytes_connection(budget)
    conn.receive_data(head)
    targets = write_like_the_kernel(conn, masked(payload, key), chunk=100_003)
    (message,) = take(conn)
    data = _delivered(message)
    assert type(data) is bytes and data == payload
    assert budget.held == 0 and budget.cache is not None and budget.cache.held == 0  # no region
    if speedups is not None:  # (the pure-Python twin's take() copies)
        received = np.frombuffer(data, np.uint8)
        assert targets and all(
            np.shares_memory(received, np.frombuffer(t, np.uint8)) for t in targets
        )


def test_bytes_frame_keeps_its_budget_charge_until_delivered() -> None:
    """A large message received into bytes holds its budget charge while it waits to be
    read (as a region would), and gives it back when the application gets it; a second large
    message waits for the budget meanwhile."""
    budget = Budget(6 * MiB)
    first, second = bytes_connection(budget), bytes_connection(budget)
    a, b = os.urandom(4 * MiB), os.urandom(4 * MiB)
    head, key = header(len(a))
    write_like_the_kernel(first, head + masked(a, key), chunk=1 << 20)
    (message,) = take(first)
    assert budget.held == 4 * MiB
    head_b, key_b = header(len(b))
    second.receive_data(head_b + masked(b, key_b)[:1000])
    assert second.blocked  # the budget is taken by the message not yet delivered
    assert _delivered(message) == a and budget.held == 0
    assert second.resume()
    write_like_the_kernel(second, masked(b, key_b)[1000:], chunk=1 << 20)
    (message_b,) = take(second)
    assert _delivered(message_b) == b and budget.held == 0


def test_an_undelivered_bytes_message_gives_its_charge_back() -> None:
    """Dropped without being read (the connection went away), a message's charge is given
    back when it goes; a failure half-way through a frame gives it back at once."""
    budget = Budget(64 * MiB)
    conn = bytes_connection(budget)
    payload = os.urandom(2 * MiB)
    head, key = header(len(payload))
    write_like_the_kernel(conn, head + masked(payload, key), chunk=1 << 20)
    assert budget.held == 2 * MiB
    take(conn).clear()
    gc.collect()
    assert budget.held == 0
    head, key = header(3 * MiB)
    conn.receive_data(head + masked(os.urandom(100_000), key))
    assert budget.held == 3 * MiB and conn.payload_target() is not None
    conn.receive_eof()
    assert budget.held == 0


def _fragments(payload: bytes, size: int, empty_last: bool = False) -> bytes:
    """`payload` as masked fragments of `size` bytes (Chromium: 131,000), each under its own
    key; `empty_last`: then a final CONTINUATION without payload."""
    out = []
    for i in range(0, len(payload), size):
        part = payload[i : i + size]
        fin = i + size >= len(payload) and not empty_last
        head, key = header(len(part), opcode=0 if i else 2, fin=fin)
        out.append(head + masked(part, key))
    if empty_last:
        out.append(header(0, opcode=0)[0])
    return b"".join(out)


def _feed(conn: Connection, data: bytes, chunk: int) -> memoryview | None:
    """write_like_the_kernel, letting go of each target view at once (as uvloop does after
    buffer_updated); returns the last one."""
    last = None
    pos = 0
    while pos < len(data):
        if last is not None:
            last.release()
            last = None
        target = conn.payload_target()
        if target is None:
            n = min(chunk, len(data) - pos)
            conn.receive_data(data[pos : pos + n])
        else:
            n = min(chunk, len(target), len(data) - pos)
            target[:n] = data[pos : pos + n]
            conn.payload_written(n)
            last = target
        pos += n
    return last


@pytest.mark.parametrize("fragment", [131_000, 65_536])
def test_fragments_are_received_into_the_bytes_delivered(fragment: int) -> None:
    """A fragmented message (its size unknown until its last fragment) grows in the bytes
    object it is delivered as (BytesBuffer.resize), not in a region copied at the end: no
    region is mapped, the budget is charged with what arrived until the application gets it,
    and the bytes delivered are the memory the last fragment was written into."""
    budget = Budget(64 * MiB, RegionCache(64 * MiB))
    payload = os.urandom(2 * MiB + 12_345)
    conn = bytes_connection(budget)
    last = _feed(conn, _fragments(payload, fragment), chunk=131_000)
    (message,) = take(conn)
    assert isinstance(message, Message) and type(message.buffer) is BytesBuffer
    assert budget.held == len(payload) and len(message.buffer) == len(payload)
    data = _delivered(message)
    assert type(data) is bytes and data == payload
    assert budget.held == 0 and budget.cache is not None and budget.cache.held == 0
    if speedups is not None and last is not None:
        assert np.shares_memory(np.frombuffer(data, np.uint8), np.frombuffer(last, np.uint8))


@pytest.mark.parametrize("fragment", [16_384, 1_000])
def test_small_first_fragments_are_assembled_in_a_region_and_copied(fragment: int) -> None:
    """A fragmented message whose first fragment is small (WebSocket-Node's 16 KiB) is not
    grown in its bytes from that size (a dozen doublings; several such messages at once
    outgrew malloc's kept heap, 4.5x the time per message): it is assembled in a region as
    for the zero-copy path and copied at delivery, intact, the budget given back."""
    budget = Budget(64 * MiB, RegionCache(64 * MiB))
    payload = os.urandom(2 * MiB + 12_345)
    conn = bytes_connection(budget)
    _feed(conn, _fragments(payload, fragment), chunk=131_000)
    (message,) = take(conn)
    assert isinstance(message, Message) and type(message.buffer) is not BytesBuffer
    with message:  # what fastws.asgi does with a region: one copy, then released
        data = bytes(message)
    assert data == payload
    assert budget.held == 0


def test_fragments_into_bytes_when_views_are_held_or_the_last_is_empty() -> None:
    """Views of the message's bytes still held (an event loop that keeps its read buffer
    longer) make it move instead of growing in place; a final fragment without payload cuts
    the bytes to size at delivery; a small fragmented message is bytes of its own. Each
    arrives whole and its charge goes back."""
    budget = Budget(64 * MiB, RegionCache(64 * MiB))
    conn = bytes_connection(budget)
    payload = os.urandom(1_500_000)
    views = write_like_the_kernel(conn, _fragments(payload, 131_000), chunk=65_537)
    assert views  # still held: every growth was a move
    assert _delivered(take(conn)[0]) == payload and budget.held == 0
    _feed(conn, _fragments(payload, 131_000, empty_last=True), chunk=200_000)
    assert _delivered(take(conn)[0]) == payload and budget.held == 0
    small = os.urandom(5000)
    _feed(conn, _fragments(small, 700, empty_last=True), chunk=4096)
    assert take(conn) == [small]
    assert budget.held == 0 and budget.cache is not None and budget.cache.held == 0


def test_fragments_over_the_limit_fail_1009_and_give_the_charge_back() -> None:
    """max_message_size holds across fragments grown in bytes (1009), and the bytes
    received so far give their charge back."""
    budget = Budget(64 * MiB)
    conn = Connection(assembler=BytesAssembler(budget), max_message_size=2 * MiB)
    data = _fragments(os.urandom(3 * MiB), 131_000)
    _feed(conn, data[:1_400_000], chunk=131_000)
    assert budget.held > MiB
    _feed(conn, data[1_400_000:], chunk=131_000)
    failures = [e for e in take(conn) if isinstance(e, Failure)]
    assert failures and failures[0].code == 1009
    gc.collect()
    assert budget.held == 0


def test_bytes_assembler_small_frames_and_no_region_wait() -> None:
    """Frames complete in one read are bytes of their own; the assembler never waits a loop
    iteration for a region (it takes none)."""
    budget = Budget(1 << 30, RegionCache(64 * MiB))
    conn = bytes_connection(budget)
    head, key = header(1000)
    conn.receive_data(head + masked(b"x" * 1000, key))
    assert take(conn) == [b"x" * 1000]
    assert BytesAssembler(budget).admit(2 * MiB, True, True) is None
    assert BytesAssembler(budget).admit(2 * MiB, False, True) is None
    budget.free(4 * MiB)


def test_messages_growing_at_once_in_bytes_stay_within_the_kept_heap() -> None:
    """Several fragmented messages growing in their bytes at once are bounded by what a
    worker's malloc keeps (the cache limit, buffer_cache): a growth that would take them past
    it moves that message into a region (copied at delivery), so the heap does not outgrow
    what is kept and get faulted in afresh for every message (4 x 16 MiB in Chromium's
    fragments: 4,088 faults and 9.5 ms per message). Every message arrives intact, and the
    count of growing bytes and the budget go back to 0."""
    budget = Budget(1 << 30, RegionCache(6 * MiB))
    assembler = BytesAssembler(budget)
    conns = [Connection(assembler=assembler) for _ in range(3)]
    payloads = [os.urandom(3 * MiB + 1000 * i) for i in range(3)]
    wires = [_fragments(p, 131_000) for p in payloads]
    pos = [0, 0, 0]
    while any(p < len(w) for p, w in zip(pos, wires, strict=True)):
        for i, conn in enumerate(conns):  # interleaved, as reads from several sockets are
            if pos[i] < len(wires[i]):
                n = min(262_000, len(wires[i]) - pos[i])
                _feed(conn, wires[i][pos[i] : pos[i] + n], chunk=131_000)
                pos[i] += n
        assert assembler.growing <= 6 * MiB
    messages = [take(conn)[0] for conn in conns]
    kinds = [type(m.buffer) is BytesBuffer for m in messages]  # type: ignore[attr-defined]
    assert kinds.count(True) == 1 and kinds.count(False) == 2
    assert assembler.growing == 0
    for message, payload in zip(messages, payloads, strict=True):
        if type(message.buffer) is BytesBuffer:  # type: ignore[attr-defined]
            assert _delivered(message) == payload
        else:
            with message:  # type: ignore[attr-defined]
                assert bytes(message) == payload  # type: ignore[call-overload]
    assert budget.held == 0


def test_a_failure_mid_message_stops_counting_its_growing_bytes() -> None:
    """A fragmented message dropped half-way (the connection failed) no longer counts
    against the bytes growing at once: later messages grow in their bytes again."""
    budget = Budget(1 << 30, RegionCache(4 * MiB))
    assembler = BytesAssembler(budget)
    conn = Connection(assembler=assembler)
    payload = os.urandom(3 * MiB)
    wire = _fragments(payload, 131_000)
    _feed(conn, wire[: 2 * MiB], chunk=131_000)
    assert assembler.growing >= 2 * MiB
    conn.receive_eof()
    assert assembler.growing == 0 and budget.held == 0
    again = Connection(assembler=assembler)
    _feed(again, wire, chunk=131_000)
    (message,) = take(again)
    assert type(message.buffer) is BytesBuffer and _delivered(message) == payload  # type: ignore[union-attr]
    assert assembler.growing == 0


def test_a_message_growing_to_mallocs_largest_heap_block_moves_to_a_region() -> None:
    """A fragmented message is not grown in its bytes to 32 MiB (the largest block a
    worker's malloc serves from its heap): past 16 MiB it moves into a region and is copied
    at delivery, instead of being mapped by malloc and faulted in afresh for every message
    (2 x 32 MiB: 18.7 ms per message, 7.4 ms through a region)."""
    budget = Budget(1 << 30, RegionCache(256 * MiB))
    assembler = BytesAssembler(budget)
    conn = Connection(assembler=assembler, max_message_size=64 * MiB)
    payload = os.urandom(16 * MiB + 131_000)
    _feed(conn, _fragments(payload, 131_000), chunk=131_000)
    (message,) = take(conn)
    assert type(message.buffer) is not BytesBuffer  # type: ignore[union-attr]
    with message:  # type: ignore[union-attr]
        assert bytes(message) == payload  # type: ignore[call-overload]
    assert assembler.growing == 0 and budget.held == 0
