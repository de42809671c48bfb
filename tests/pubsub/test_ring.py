"""The shared-memory ring between workers (fastws.pubsub.ring), driven directly.

Each worker's view of the ring is its own `Ring` object over the same shared mapping (what a
fork gives each worker); here `copy.copy` makes those views in one process, and one test forks
for real.
"""

from __future__ import annotations

import copy
import os
import select
from collections.abc import Iterator

import pytest

from fastws.pubsub.broker import PublishError
from fastws.pubsub.ring import MIN_SIZE, Ring


class Reader:
    """Collects what a view of the ring delivers, and the losses it reports."""

    def __init__(self, ring: Ring, slot: int, wanted: set[str] | None = None) -> None:
        self.view = copy.copy(ring)
        self.view.attach(slot)
        self.wanted = wanted
        self.got: list[tuple[str, bytes, bool]] = []
        self.lost: list[str | None] = []

    def read(self) -> list[tuple[str, bytes, bool]]:
        before = len(self.got)
        self.view.read(
            lambda channel: self.wanted is None or channel in self.wanted,
            lambda channel, payload, text: self.got.append((channel, bytes(payload), text)),
            self.lost.append,
        )
        return self.got[before:]


def writer(ring: Ring, slot: int) -> Ring:
    view = copy.copy(ring)
    view.attach(slot)
    return view


@pytest.fixture
def ring() -> Iterator[Ring]:
    ring = Ring(4, MIN_SIZE)
    yield ring
    ring.close()


def test_messages_arrive_intact_in_order_across_many_wrap_arounds(ring: Ring) -> None:
    """Records of varying sizes, written past the end of the ring dozens of times (padding
    marks included), all arrive byte for byte, in order, with their text flag."""
    pub = writer(ring, 1)
    sub = Reader(ring, 2)
    sent = []
    for i in range(400):
        payload = bytes([i % 251]) * (i * 37 % 900)
        channel = f"room-{i % 3}"
        pub.write(channel.encode(), payload, i % 2 == 0)
        sent.append((channel, payload, i % 2 == 0))
        if i % 3 == 2:
            sub.read()
    sub.read()
    assert sub.got == sent
    assert sub.lost == []
    assert pub._head > 20 * ring.size  # it really went round


def test_a_reader_that_falls_behind_is_told_and_never_fed_overwritten_data(ring: Ring) -> None:
    """A reader that does not read while the writer laps it reports the loss once, delivers
    nothing from the overwritten stretch, and then gets new messages normally."""
    pub = writer(ring, 1)
    sub = Reader(ring, 2)
    for i in range(100):  # ~ 100 * 224 bytes: more than a 4 KiB ring
        pub.write(b"room", b"old-%03d" % i + bytes(200), False)
    assert sub.read() == []
    assert sub.lost == [None]
    pub.write(b"room", b"new", False)
    assert sub.read() == [("room", b"new", False)]
    assert sub.lost == [None]


def test_a_record_overwritten_under_the_reader_is_detected_by_its_sequence(ring: Ring) -> None:
    """If a record's sequence number is not the one after the last record read (the data
    changed under the reader), the reader reports a loss instead of delivering it."""
    pub = writer(ring, 1)
    sub = Reader(ring, 2)
    pub.write(b"room", b"first", False)
    assert sub.read() == [("room", b"first", False)]
    pub.write(b"room", b"second", False)
    offset = sub.view._pos[1] % ring.size
    at = ring._data_at + ring.size + offset + 8  # the sequence number of that record
    ring._map[at : at + 8] = (12345).to_bytes(8, "little")
    assert sub.read() == []
    assert sub.lost == [None]


def test_each_publishers_order_is_kept_when_several_publish(ring: Ring) -> None:
    """Two workers publish interleaved; a third reads each one's messages in its order."""
    a, b = writer(ring, 1), writer(ring, 3)
    sub = Reader(ring, 2)
    for i in range(60):
        a.write(b"room", b"a%d" % i, True)
        if i % 2:
            b.write(b"room", b"b%d" % i, True)
        if i % 7 == 0:
            sub.read()
    sub.read()
    got = [payload for _, payload, _ in sub.got]
    assert [p for p in got if p.startswith(b"a")] == [b"a%d" % i for i in range(60)]
    assert [p for p in got if p.startswith(b"b")] == [b"b%d" % i for i in range(1, 60, 2)]


def test_a_message_larger_than_the_free_space_wraps_and_one_larger_than_the_ring_fails(
    ring: Ring,
) -> None:
    """A message that does not fit before the ring's end starts again at its beginning and
    arrives whole; one larger than the whole ring raises PublishError and leaves the ring
    untouched."""
    pub = writer(ring, 1)
    sub = Reader(ring, 2)
    pub.write(b"room", bytes(3000), False)
    assert len(sub.read()) == 1
    big = bytes(range(256)) * 12  # 3072 bytes: does not fit after the first record
    pub.write(b"room", big, False)
    assert sub.read() == [("room", big, False)]
    head = pub._head
    with pytest.raises(PublishError):
        pub.write(b"room", bytes(ring.size), False)
    assert pub._head == head
    pub.write(b"room", b"after", True)
    assert sub.read() == [("room", b"after", True)]
    assert sub.lost == []


def test_channels_nobody_wants_here_are_skipped_without_being_delivered(ring: Ring) -> None:
    """A worker only delivers (and copies) messages of channels it has subscribers on."""
    pub = writer(ring, 1)
    sub = Reader(ring, 2, wanted={"mine"})
    pub.write(b"other", b"x", True)
    pub.write(b"mine", b"y", True)
    assert sub.read() == [("mine", b"y", True)]


def test_a_restarted_writer_in_the_same_slot_neither_replays_nor_corrupts(ring: Ring) -> None:
    """A new worker in a slot carries on from its predecessor's head and sequence number:
    readers get exactly the new messages, with no loss reported. A reader attaching late
    starts at the current head (no replay either)."""
    first = writer(ring, 1)
    sub = Reader(ring, 2)
    for i in range(5):
        first.write(b"room", b"%d" % i, False)
    assert len(sub.read()) == 5
    ring.retire(1)
    second = writer(ring, 1)
    second.write(b"room", b"5", False)
    assert sub.read() == [("room", b"5", False)]
    late = Reader(ring, 3)
    assert late.read() == []
    second.write(b"room", b"6", False)
    assert late.read() == [("room", b"6", False)]
    assert sub.read() == [("room", b"6", False)]
    assert sub.lost == late.lost == []


def test_readers_lists_live_workers_and_the_eventfd_wakes_them(ring: Ring) -> None:
    """A publisher wakes exactly the other attached workers; retire() stops waking one."""
    pub = writer(ring, 1)
    sub = copy.copy(ring)
    fd = sub.attach(2)
    assert pub.readers() == [2]
    pub.wake(pub.readers())
    assert os.eventfd_read(fd) == 1
    ring.retire(2)
    assert pub.readers() == []


def test_a_forked_process_reads_what_the_parent_publishes(ring: Ring) -> None:
    """The mapping is shared across fork, as the master's ring is with its workers."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a worker in slot 2
        status = 1
        try:
            view = copy.copy(ring)
            fd = view.attach(2)
            os.write(write_end, b"r")
            got: list[bytes] = []
            while len(got) < 50:
                select.select([fd], [], [], 10)  # as the worker's event loop waits on it
                os.eventfd_read(fd)
                view.read(lambda c: True, lambda c, p, t: got.append(bytes(p)), lambda c: None)
            status = 0 if got == [b"%d" % i for i in range(50)] else 2
        finally:
            os._exit(status)
    os.close(write_end)
    assert os.read(read_end, 1) == b"r"
    os.close(read_end)
    pub = writer(ring, 1)
    for i in range(50):
        pub.write(b"room", b"%d" % i, False)
        pub.wake(pub.readers())
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
