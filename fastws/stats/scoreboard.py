"""The scoreboard: one shared memory mapping with a slot per worker process.

The master maps it (anonymous, MAP_SHARED) before forking, so every worker sees the same pages.
Each live worker is the only writer of its own slot: a heartbeat (CLOCK_MONOTONIC, which is
the same clock in every process), its state, a one-line message (why it failed to boot) and its
counters. The master reads the heartbeats to find stuck workers; any worker reads all slots to
answer /metrics for the whole server. Slot 0 belongs to the master: when a worker exits, the
master adds the worker's last counters into it (so totals never go backwards) and frees the slot.
It also adds them to the retired counts of the worker's worker slot (`listener`, the stable
index /metrics labels its series with), so that each worker slot's counters keep growing
across restarts and reloads.

No locks: a reader may see one slot half-updated (a counter from before the update next to one
from after); each 8-byte field is written whole, which is all a metrics reader needs. Fields
are written through memoryviews of 8-byte items, never with `struct.pack_into`: that zeroes
its target before it packs, so a reader in another process could find a live worker's
heartbeat at 0.0 (the master then counted from the fork and killed it: issue 21), its state
FREE (a slot the master could hand to a new worker) or its counters at 0.
"""

from __future__ import annotations

import mmap
import struct
import time
from array import array
from dataclasses import dataclass

from . import counters

__all__ = ["BOOTING", "FREE", "READY", "STOPPING", "Scoreboard", "SlotView"]

FREE, BOOTING, READY, STOPPING = range(4)
STATE_NAMES = ("free", "booting", "ready", "stopping")

_HEAD = struct.Struct("=qqqdd")  # pid, state, listener index, started (wall clock), heartbeat
_MESSAGE_SIZE = 160
_COUNTERS = struct.Struct(f"={counters.SIZE}q")
_SLOT_SIZE = -(-(_HEAD.size + _MESSAGE_SIZE + _COUNTERS.size) // 64) * 64  # cache-line aligned
_COUNTERS_AT = _HEAD.size + _MESSAGE_SIZE
_BEAT_AT = 32  # the heartbeat's offset in a slot (the last field of _HEAD)
#: The counters an exited worker's counts are added on for (everything but the gauges).
_CUMULATIVE = [
    i
    for i in range(counters.SIZE)
    if i >= len(counters.NAMES) or counters.NAMES[i] not in counters.GAUGES
]


@dataclass(frozen=True, slots=True)
class SlotView:
    """A copy of one slot, as read at one moment."""

    slot: int
    pid: int
    state: int
    listener: int
    started: float
    heartbeat: float
    message: str
    values: tuple[int, ...]

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else "?"


class Scoreboard:
    """`slots` worker slots plus the master's slot 0, in one shared anonymous mapping."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        # Process slots 0..slots, then one retired-counts record per worker slot (listener).
        # Pages are committed only when written: unused slots cost address space only.
        self._retired_at = (slots + 1) * _SLOT_SIZE
        size = self._retired_at + slots * _COUNTERS.size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        # Every field is an aligned 8-byte word, written and read as one item of these views:
        # one store, one load, nothing in between (see the module docstring).
        self._words = memoryview(self._map).cast("q")
        self._beats = memoryview(self._map).cast("d")

    def close(self) -> None:
        self._words.release()
        self._beats.release()
        self._map.close()

    # -- the master ------------------------------------------------------------------------

    def claim(self, listener: int) -> int:
        """Reserve a free slot for a worker about to be forked (the master does this)."""
        for slot in range(1, self.slots + 1):
            if self._head(slot)[1] == FREE:
                now = time.monotonic()
                self._write_head(slot, 0, BOOTING, listener, time.time(), now)
                self._set_message(slot, "")
                self._put(slot * _SLOT_SIZE + _COUNTERS_AT, [0] * counters.SIZE)
                return slot
        raise RuntimeError(f"all {self.slots} scoreboard slots are in use")

    def retire(self, slot: int) -> None:
        """The worker in `slot` has exited: fold its counters into slot 0 and into its worker
        slot's retired counts, free its slot. Gauges are not carried over: they were about
        the process that is gone."""
        values = self._values(slot)
        listener = self._head(slot)[2]
        for offset in (_COUNTERS_AT, self._retired_offset(listener)):
            if offset is None:
                continue
            total = list(_COUNTERS.unpack_from(self._map, offset))
            for i in _CUMULATIVE:
                total[i] += values[i]
            self._put(offset, total)
        self._write_head(slot, 0, FREE, 0, 0.0, 0.0)

    # -- a worker (only ever its own slot) --------------------------------------------------

    def set_pid(self, slot: int, pid: int) -> None:
        self._words[slot * _SLOT_SIZE // 8] = pid

    def beat(self, slot: int, state: int | None = None) -> None:
        """Publish this process's counters and a fresh heartbeat (and optionally a new state)."""
        base = slot * _SLOT_SIZE
        self._put(base + _COUNTERS_AT, counters.values)
        if state is not None:
            self._words[(base + 8) // 8] = state
        self._beats[(base + _BEAT_AT) // 8] = time.monotonic()

    def fail(self, slot: int, message: str) -> None:
        """Say why this worker is about to exit (the master logs it)."""
        self._set_message(slot, message)

    # -- anyone ---------------------------------------------------------------------------

    def read(self, slot: int) -> SlotView:
        pid, state, listener, started, heartbeat = self._head(slot)
        raw = self._map[slot * _SLOT_SIZE + _HEAD.size : slot * _SLOT_SIZE + _COUNTERS_AT]
        message = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return SlotView(slot, pid, state, listener, started, heartbeat, message, self._values(slot))

    def workers(self) -> list[SlotView]:
        """Every slot in use by a worker."""
        views = []
        for slot in range(1, self.slots + 1):
            if self._head(slot)[1] != FREE:
                views.append(self.read(slot))
        return views

    def retired(self, listener: int) -> tuple[int, ...]:
        """What the exited workers of worker slot `listener` counted (no gauges)."""
        offset = self._retired_offset(listener)
        if offset is None:
            return (0,) * counters.SIZE
        return _COUNTERS.unpack_from(self._map, offset)

    def totals(self) -> list[int]:
        """Counters of the whole server: exited workers (slot 0) plus the live ones."""
        total = list(self._values(0))
        for view in self.workers():
            for i, value in enumerate(view.values):
                total[i] += value
        return total

    # -- layout ---------------------------------------------------------------------------

    def _head(self, slot: int) -> tuple[int, int, int, float, float]:
        pid, state, listener, started, _ = _HEAD.unpack_from(self._map, slot * _SLOT_SIZE)
        return pid, state, listener, started, self._beats[(slot * _SLOT_SIZE + _BEAT_AT) // 8]

    def _write_head(
        self, slot: int, pid: int, state: int, listener: int, started: float, beat: float
    ) -> None:
        at = slot * _SLOT_SIZE // 8
        self._words[at : at + 3] = array("q", (pid, state, listener))
        self._beats[at + 3] = started
        self._beats[at + 4] = beat

    def _put(self, offset: int, values: list[int]) -> None:
        """8-byte integers at `offset`, each written whole (no struct: see the docstring)."""
        at = offset // 8
        self._words[at : at + len(values)] = array("q", values)

    def _retired_offset(self, listener: int) -> int | None:
        if 0 <= listener < self.slots:
            return self._retired_at + listener * _COUNTERS.size
        return None

    def _values(self, slot: int) -> tuple[int, ...]:
        return _COUNTERS.unpack_from(self._map, slot * _SLOT_SIZE + _COUNTERS_AT)

    def _set_message(self, slot: int, message: str) -> None:
        data = message.encode("utf-8", "replace")[: _MESSAGE_SIZE - 1]
        start = slot * _SLOT_SIZE + _HEAD.size
        self._map[start : start + _MESSAGE_SIZE] = data.ljust(_MESSAGE_SIZE, b"\0")
