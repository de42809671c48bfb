"""Channels across the workers of one host: a shared-memory ring, no broker process.

The master maps one shared anonymous region before it forks (so every worker, and every
worker forked later, sees the same pages) and creates one eventfd per worker slot. The region
holds one ring per scoreboard slot: the worker in that slot is the ring's only writer, every
other worker reads it. One writer per ring means no locks, and each publisher's messages are
read in the order it wrote them.

A publish appends a record (channel, payload, sequence number) to the publisher's own ring,
then writes 1 to the eventfd of every other live worker; each worker watches its own eventfd
with `loop.add_reader` and, when woken, reads every ring from where it stopped. A record
never straddles the end of a ring: when it does not fit before the end, it starts at 0 and
the ring's control block records where the skipped end began.

The rings are overwritten, never blocked on: a publisher never waits for a slow worker. A
worker that falls behind (the writer overwrote a record it had not read yet) finds out from
the ring's `tail` (the oldest byte still intact, moved before the writer overwrites
anything) and from the records' sequence numbers, checked again after the record was copied.
It then skips to the ring's head and calls `lost(None)`: the hub closes its subscribers with
1013, so no client is fed a torn message or silently misses some.

Positions are absolute byte counts (64-bit, they never wrap); a record's place in its ring is
`position % size`. Head, tail and the next sequence number live in shared memory, so a
worker restarted in the same slot (crash, HUP reload) carries on from its predecessor's
head: nothing is replayed, and a record its predecessor left half-written was never
published (the head had not moved past it). A worker that starts reading begins at every
ring's current head.

Ordering between processes: the writer stores tail, then the record, then head, then writes
the eventfd; a reader reads the eventfd, then head, the record, then tail again. The eventfd
system calls order the head against the record; the tail check relies on x86-64's ordered
stores and loads (on weaker memory models a torn record would still fail its sequence check
only by chance: ARM is not supported by this ring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import struct
import sys
from collections.abc import Callable

from ..stats import counters
from .broker import Deliver, Lost, PublishError

__all__ = ["DEFAULT_SIZE", "LocalBroker", "Ring"]

logger = logging.getLogger("fastws.pubsub")

#: Default of the pubsub_ring_size option: bytes of each worker's ring.
DEFAULT_SIZE = 16 << 20
MIN_SIZE = 4096

# A ring's control block, one cache line each: head, tail, next sequence number, reader pid,
# and 1 + the position of the latest padding (0: none yet). The padding's own mark in the
# data is overwritten when the record after it is longer than the data before it; readers go
# by this word instead (a reader at an older padding has been lapped: the tail says so).
_CONTROL = 64
_HEAD, _TAIL, _SEQ, _READER, _PADDED = 0, 1, 2, 3, 4  # in 8-byte words from the block's start
# A record: size (of the whole record, a multiple of 8), kind, text flag, channel length,
# sequence number, payload length; then the channel and the payload.
_RECORD = struct.Struct("=IBBHQI4x")
_MARK = struct.Struct("=IB3x")  # the first 8 bytes of a record: size and kind
_MESSAGE = 1
_RECORD_SIZE = _RECORD.size
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)


class Ring:
    """`count` single-writer rings of `size` bytes each in one shared mapping, and an eventfd
    per ring to wake the worker that reads for that slot. Made by the master before fork."""

    def __init__(self, count: int, size: int = DEFAULT_SIZE) -> None:
        if size < MIN_SIZE:
            raise ValueError(f"a ring needs at least {MIN_SIZE} bytes, not {size}")
        self.count = count
        self.size = size = (size + 7) & ~7
        self._data_at = -(-count * _CONTROL // mmap.PAGESIZE) * mmap.PAGESIZE
        # MAP_NORESERVE: pages are committed only when written; idle rings cost nothing.
        self._map = mmap.mmap(
            -1, self._data_at + count * size, flags=mmap.MAP_SHARED | _MAP_NORESERVE
        )
        self._words = memoryview(self._map)[: count * _CONTROL].cast("Q")
        self._fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(count)]
        # The attached worker's view (after fork): its slot, and its place in every ring.
        self.slot = -1
        self._head = 0  # our ring's head and next sequence number (we are its only writer)
        self._seq = 0
        self._pos: list[int] = []
        self._last: list[int] = []  # sequence number of the last record read, -1: none yet

    def close(self) -> None:
        self._words.release()
        self._map.close()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def _word(self, ring: int, field: int) -> int:
        return self._words[ring * 8 + field]

    def _set(self, ring: int, field: int, value: int) -> None:
        self._words[ring * 8 + field] = value

    # -- the master --------------------------------------------------------------------------

    def retire(self, slot: int) -> None:
        """The worker of `slot` has exited: stop waking it (the master calls this)."""
        if 0 <= slot < self.count:
            self._set(slot, _READER, 0)

    # -- a worker ----------------------------------------------------------------------------

    def attach(self, slot: int) -> int:
        """Become the writer of ring `slot` and a reader of the others, from now on; return
        the eventfd that says there is something to read."""
        if not 0 <= slot < self.count:
            raise ValueError(f"no ring for slot {slot} (there are {self.count})")
        self.slot = slot
        self._head = self._word(slot, _HEAD)
        self._seq = self._word(slot, _SEQ)
        self._pos = [self._word(ring, _HEAD) for ring in range(self.count)]
        self._last = [-1] * self.count
        fd = self._fds[slot]
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(fd)  # wake-ups meant for a predecessor in this slot
        self._set(slot, _READER, os.getpid())
        return fd

    def detach(self) -> None:
        if self.slot >= 0:
            self._set(self.slot, _READER, 0)
            self.slot = -1

    def readers(self) -> list[int]:
        """Slots of the other workers reading now."""
        me = self.slot
        words = self._words
        return [ring for ring in range(self.count) if ring != me and words[ring * 8 + _READER] != 0]

    def write(self, channel: bytes, payload: bytes | bytearray | memoryview, text: bool) -> None:
        """Append one message to our ring (the caller wakes the readers)."""
        size = self.size
        need = (_RECORD_SIZE + len(channel) + len(payload) + 7) & ~7
        if need > size or len(channel) > 0xFFFF:
            raise PublishError(
                f"message of {len(payload)} bytes does not fit in the channels' ring"
                f" (pubsub_ring_size {size} bytes)"
            )
        me = self.slot
        head = self._head
        offset = head % size
        pad = size - offset if offset + need > size else 0
        end = head + pad + need
        if end - size > self._word(me, _TAIL):
            self._set(me, _TAIL, end - size)  # before anything is overwritten
        mapping = self._map
        base = self._data_at + me * size
        if pad:
            self._set(me, _PADDED, head + 1)
            offset = 0
        at = base + offset
        _RECORD.pack_into(mapping, at, need, _MESSAGE, text, len(channel), self._seq, len(payload))
        at += _RECORD_SIZE
        mapping[at : at + len(channel)] = channel
        at += len(channel)
        mapping[at : at + len(payload)] = payload
        self._seq += 1
        self._set(me, _SEQ, self._seq)
        self._head = end
        self._set(me, _HEAD, end)

    def wake(self, readers: list[int]) -> None:
        fds = self._fds
        for ring in readers:
            with contextlib.suppress(OSError):
                os.eventfd_write(fds[ring], 1)

    def read(self, wanted: Callable[[str], bool], deliver: Deliver, lost: Lost) -> int:
        """Deliver every new record of the other rings whose channel is `wanted`, in order per
        ring; return how many were delivered. Falling behind a ring calls `lost(None)`."""
        delivered = 0
        words = self._words
        for ring in range(self.count):
            head = words[ring * 8 + _HEAD]
            if self._pos[ring] != head and ring != self.slot:
                delivered += self._read_ring(ring, head, wanted, deliver, lost)
        return delivered

    def _read_ring(
        self, ring: int, head: int, wanted: Callable[[str], bool], deliver: Deliver, lost: Lost
    ) -> int:
        size = self.size
        mapping = self._map
        words = self._words
        base = self._data_at + ring * size
        pos = self._pos[ring]
        last = self._last[ring]
        delivered = 0
        while pos < head:
            offset = pos % size
            if pos + 1 == words[ring * 8 + _PADDED]:
                pos += size - offset  # the record did not fit before the end: it is at 0
                continue
            if pos < words[ring * 8 + _TAIL]:
                return delivered + self._fell_behind(ring, lost)
            at = base + offset
            length, kind = _MARK.unpack_from(mapping, at)
            if (
                kind != _MESSAGE
                or length < _RECORD_SIZE
                or length & 7
                or offset + length > size
                or pos + length > head
            ):
                return delivered + self._fell_behind(ring, lost)
            _, _, text, channel_len, seq, payload_len = _RECORD.unpack_from(mapping, at)
            if _RECORD_SIZE + channel_len + payload_len > length or (last >= 0 and seq != last + 1):
                return delivered + self._fell_behind(ring, lost)
            at += _RECORD_SIZE
            raw_channel = mapping[at : at + channel_len]
            payload: bytes | None = None
            try:
                channel = raw_channel.decode()
            except UnicodeDecodeError:
                channel = ""
            if channel and wanted(channel):
                at += channel_len
                payload = mapping[at : at + payload_len]  # the one copy in this worker
            if pos < words[ring * 8 + _TAIL] or not channel:  # overwritten while we copied
                return delivered + self._fell_behind(ring, lost)
            pos += length
            last = seq
            self._pos[ring] = pos
            self._last[ring] = last
            if payload is not None:
                deliver(channel, memoryview(payload), bool(text))
                delivered += 1
        self._pos[ring] = pos
        self._last[ring] = last
        return delivered

    def _fell_behind(self, ring: int, lost: Lost) -> int:
        skipped = self._word(ring, _HEAD) - self._pos[ring]
        self._pos[ring] = self._word(ring, _HEAD)
        self._last[ring] = -1
        counters.values[counters.PUBSUB_LAGGED] += 1
        logger.warning(
            "worker %d fell behind the channels' ring of slot %d (%d bytes overwritten before"
            " they were read): closing its subscribers with 1013; a larger pubsub_ring_size"
            " gives slow workers more time",
            os.getpid(),
            ring,
            skipped,
        )
        lost(None)
        return 0


class LocalBroker:
    """The `local` broker: the host's `Ring` between workers, or, without one (a single
    process: `--workers 0`, or `fastws.serve()`), direct delivery in this process."""

    def __init__(self, ring: Ring | None = None, slot: int = 0) -> None:
        self._ring = ring
        self._slot = slot
        self._deliver: Deliver | None = None
        self._lost: Lost | None = None
        self._channels: set[str] = set()  # channels with subscribers in this worker
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        self._deliver = deliver
        self._lost = lost or _ignore
        ring = self._ring
        if ring is not None:
            self._loop = asyncio.get_running_loop()
            self._fd = ring.attach(self._slot)
            self._loop.add_reader(self._fd, self._woken)

    async def publish(self, channel: str, payload: bytes | memoryview, text: bool) -> None:
        self.publish_nowait(channel, payload, text)

    def publish_nowait(self, channel: str, payload: bytes | memoryview, text: bool) -> None:
        """`publish` without a coroutine: the ring never makes a publisher wait."""
        deliver = self._deliver
        if deliver is None:
            raise PublishError("the broker is not started")
        ring = self._ring
        if ring is not None and ring.slot >= 0:
            readers = ring.readers()
            if readers:
                ring.write(channel.encode(), payload, text)
                ring.wake(readers)
        if channel in self._channels:
            deliver(channel, payload if type(payload) is memoryview else memoryview(payload), text)

    def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def close(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        if self._ring is not None:
            self._ring.detach()
        self._deliver = None

    def _woken(self) -> None:
        ring = self._ring
        assert ring is not None and self._fd is not None
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)
        deliver = self._deliver
        if deliver is None:
            return
        lost = self._lost or _ignore
        ring.read(self._channels.__contains__, deliver, lost)


def _ignore(channel: str | None) -> None:
    pass
