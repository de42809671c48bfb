"""Where received payloads live while they are assembled, and what they cost the process.

Small payloads are plain `bytes` made by the unmasking step. A frame whose payload does not
arrive in one read gets a destination buffer sized from its declared length, which the I/O
layer may hand to the kernel directly (`BufferedProtocol.get_buffer`). From `MMAP_MIN` on that
buffer is an anonymous mmap (a `Region`): its pages are committed only when written, so a peer
that declares a 2 GiB frame and sends nothing costs address space, not memory, and releasing
it gives the memory back to the OS at once (malloc may keep freed memory for itself).

A fragmented message whose total size is unknown grows inside a `reserve()`d region of
`max_message_size` bytes of address space (MAP_NORESERVE): only the pages written count, and
it never moves, so no fragment is copied twice. Reservations are recycled too (the cache
counts the pages a reservation has had written, not its address space): a browser sends a
large message in fragments (Chromium: 131,000 bytes each), and a fresh reservation per
message cost a page fault per 4 KiB of it, ~10x the time of a message in one frame.

`Budget` bounds the bytes held in regions by one process: a new large message waits (its
connection stops reading) while the others hold more than the budget.

`BytesBuffer` is for a payload that is delivered as `bytes` (ASGI): a new bytes object the
kernel writes into and the unmasking runs on before anybody else holds it, so the `bytes`
the application gets is where the payload was received, not a copy of a region.

`RegionCache` keeps released regions mapped for the next large message of their size class:
writing a fresh anonymous page costs a page fault, and on the VMs this is measured on a fault
costs ~10 us — 2.7 ms per MiB against 0.04 ms for writing pages already mapped
(bench/micro/test_buffers.py). A region is only reused once nothing can see it any more (no
memoryview, numpy array or transport write holds it), so a message never sees another's bytes.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .protocol.accel import speedups

__all__ = [
    "MMAP_MIN",
    "Budget",
    "BytesBuffer",
    "Region",
    "RegionCache",
    "allocate",
    "release",
    "reserve",
]

# From this size a message buffer is an mmap. mmap does not win on speed: filling fresh
# anonymous pages costs a page fault each, ~1 ms per MiB on this 2-core VM, where a bytearray
# that malloc recycles from its heap is filled in ~0.05 ms (bench/micro/test_buffers.py; at
# 16 MiB ~35 ms vs 8-22 ms). It wins on memory: unmapped at release, where malloc keeps freed
# blocks in the process, and a declared-but-unsent 2 GiB frame costs nothing. From 1 MiB the
# fault cost is about what receiving that MiB costs anyway; below it, malloc.
MMAP_MIN = 1 << 20

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)


class Budget:
    """Bytes held in message regions by this process, and the connections waiting for room.

    `try_charge` admits a new large message when the bytes already held plus its size fit
    in `limit`, or when nothing is held at all (so a message larger than the budget, but
    within max_message_size, is not refused forever). Growth of a message already admitted
    is always charged: stopping a half-received message could deadlock every connection.
    """

    def __init__(self, limit: int, cache: RegionCache | None = None) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: list[Callable[[], None]] = []
        #: Where this process's released regions wait to be reused (None: unmapped at once).
        self.cache = cache

    def try_charge(self, size: int) -> bool:
        # Regions released while still viewed stay charged until the cache sees them free:
        # look now, before making this message wait.
        if (
            self.held
            and self.held + size > self.limit
            and (self.cache is None or not self.cache.unpark() or self.held + size > self.limit)
        ):
            return False
        self.held += size
        return True

    def charge(self, size: int) -> None:
        self.held += size

    def free(self, size: int) -> None:
        """Give `size` bytes back; wake the waiters (their callbacks must only schedule)."""
        self.held -= size
        if self._waiters and self.held < self.limit:
            waiters, self._waiters = self._waiters, []
            for wake in waiters:
                wake()

    def wait(self, wake: Callable[[], None]) -> None:
        """Call `wake()` the next time memory is freed (it may run inside a finalizer)."""
        self._waiters.append(wake)

    def __repr__(self) -> str:
        return f"Budget(held={self.held}, limit={self.limit}, waiting={len(self._waiters)})"


class _Charged:
    """A message buffer's `Budget` charge, given back when the buffer is released or goes
    away (Region, BytesBuffer)."""

    budget: Budget | None
    charged: int

    def uncharge(self) -> None:
        """Give the charge back to its budget (this is no message's memory now)."""
        charged, self.charged = self.charged, 0
        if charged and self.budget is not None:
            self.budget.free(charged)

    def __del__(self) -> None:
        self.uncharge()


class Region(_Charged, mmap.mmap):
    """An anonymous mapping that gives its charge back to a `Budget` when it goes away."""

    budget: Budget | None = None
    charged = 0
    cache: RegionCache | None = None
    #: a reservation (see reserve()): what it costs is the pages written so far, `committed`
    reserved = False
    committed = 0

    def grow_charge(self, size: int) -> None:
        if self.budget is not None:
            self.budget.charge(size)
        self.charged += size
        if self.charged > self.committed:
            self.committed = self.charged

    def cost(self) -> int:
        """Memory it holds while cached: its size, or for a reservation the bytes written."""
        return self.committed if self.reserved else len(self)

    def free(self) -> None:
        """Recycle or unmap now if no view is exported; give the charge back either way later."""
        if self.cache is not None and self.cache.keep(self):
            return
        with contextlib.suppress(BufferError):
            self.close()
        if self.closed:
            self.uncharge()

    def exported(self) -> bool:
        """Whether a view (memoryview, numpy array, a transport's pending write) still holds it."""
        try:
            self.resize(len(self))  # the one public check of mmap's export count; no-op mremap
        except BufferError:
            return True
        return False


class _BytesTarget(bytearray):
    """The pure-Python twin of the compiled `_speedups.BytesTarget`: `size` writable bytes
    until `take()` returns them as `bytes` (here a copy; the compiled one hands out the
    bytes object that was written, and refuses views after take()); `resize()` grows or
    shrinks them while no view is held (the compiled one reallocs the bytes object)."""

    __slots__ = ("taken",)

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("negative size")
        super().__init__(size)
        self.taken = False

    def take(self) -> bytes:
        if self.taken:
            raise RuntimeError("the bytes were taken already")
        self.taken = True
        return bytes(self)

    def resize(self, size: int) -> None:
        """`size` bytes, the first min(len, size) kept; BufferError while a view is held."""
        if size < 0:
            raise ValueError("negative size")
        if self.taken:
            raise RuntimeError("the bytes were taken already")
        if size > len(self):
            self.extend(bytes(size - len(self)))  # raises BufferError while exported
        elif size < len(self):
            del self[size:]


if TYPE_CHECKING:
    _BytesBase = _BytesTarget
else:
    _BytesBase = _BytesTarget if speedups is None else speedups.BytesTarget


class BytesBuffer(_Charged, _BytesBase):
    """`size` bytes a payload is received and unmasked into, then handed out by `take()` as
    the `bytes` object itself (no copy). Like a Region it holds a `Budget` charge until
    it is released or goes away."""

    __slots__ = ("budget", "charged", "growing")
    budget: Budget | None
    charged: int
    #: the bytes its assembler counts as growing (BytesAssembler.growing), 0 once complete
    growing: int

    @classmethod
    def new(cls, size: int, budget: Budget | None = None, charged: int = 0) -> BytesBuffer:
        """`size` bytes, `charged` of them already taken from `budget` (Budget.try_charge)."""
        buf = cls(size)
        buf.budget = budget
        buf.charged = charged
        buf.growing = 0
        return buf


class RegionCache:
    """Released regions kept mapped, by size class, for up to `limit` bytes and `idle` seconds.

    `keep()` takes a region its message no longer needs. One still exported (a transport is
    still sending it, the application kept a view) is parked instead, and reused only once
    `take()` or `trim()` finds it free — its budget charge stays until then. Thread-safe: the
    blocking client may run connections in several threads.
    """

    #: Parked regions are re-checked on every take(); past this many the oldest are let go
    #: (they are unmapped when their last view goes, as without a cache).
    MAX_PARKED = 64

    def __init__(self, limit: int, idle: float = 10.0) -> None:
        self.limit = limit
        self.idle = idle
        self.held = 0  # bytes in free regions (a reservation: its written pages)
        self._free: dict[int, list[tuple[float, Region]]] = {}
        self._parked: list[Region] = []
        self._lock = threading.Lock()

    def take(self, capacity: int) -> Region | None:
        """A free region of exactly `capacity` bytes (a size class), or None."""
        with self._lock:
            if self._parked:
                self._unpark_locked()
            regions = self._free.get(capacity)
            if not regions:
                return None
            region = regions.pop()[1]
            self.held -= region.cost()
            return region

    def soon_free(self, capacity: int) -> bool:
        """No free region of `capacity`, but a released one still exported: most likely a
        transport that has written it and lets go of it within a loop iteration."""
        with self._lock:
            if self._parked:
                self._unpark_locked()
            if self._free.get(capacity):
                return False
            return any(len(region) == capacity for region in self._parked)

    def keep(self, region: Region) -> bool:
        """Take `region` for reuse; False when it does not fit (the caller unmaps it)."""
        if region.closed or region.cost() > self.limit:
            return False
        with self._lock:
            if region.exported():
                self._parked.append(region)
                if len(self._parked) > self.MAX_PARKED:
                    del self._parked[0]
                return True
            return self._add(region)

    def trim(self, now: float | None = None) -> None:
        """Unmap the free regions not reused for `idle` seconds (call it now and then)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._parked:
                self._unpark_locked()
            for capacity, regions in list(self._free.items()):
                keep = [(t, r) for t, r in regions if now - t < self.idle]
                for _, region in regions[: len(regions) - len(keep)]:
                    self.held -= region.cost()
                    region.close()
                if keep:
                    self._free[capacity] = keep
                else:
                    del self._free[capacity]

    def clear(self) -> None:
        self.trim(float("inf"))
        with self._lock:
            self._parked.clear()

    def _add(self, region: Region) -> bool:
        cost = region.cost()
        if self.held + cost > self.limit:
            return False
        region.uncharge()
        self._free.setdefault(len(region), []).append((time.monotonic(), region))
        self.held += cost
        return True

    def unpark(self) -> bool:
        """Take in the parked regions nothing sees any more; True if there were any."""
        with self._lock:
            return self._unpark_locked()

    def _unpark_locked(self) -> bool:
        parked, self._parked = self._parked, []
        for region in parked:
            if region.exported():
                self._parked.append(region)
            elif not self._add(region):
                region.close()
                region.uncharge()
        return len(self._parked) < len(parked)


def size_class(size: int) -> int:
    """The capacity a region for `size` bytes gets: four classes per power of two, whole pages,
    so that messages of similar sizes can reuse each other's regions (at most 25 % unused, and
    unused pages of a fresh mapping cost nothing)."""
    step = max(1 << max(size.bit_length() - 3, 0), mmap.PAGESIZE)
    return -(-size // step) * step


def _region(size: int, budget: Budget | None, charged: int, flags: int) -> Region:
    region = Region(-1, size, flags=flags)
    region.budget = budget
    region.charged = charged
    return region


def allocate(
    size: int, budget: Budget | None = None, charged: int = 0, lazy: bool = False
) -> bytearray | Region:
    """A writable buffer of `size` bytes whose untouched pages cost no memory when large.

    `charged` bytes of `budget` were already taken for it (see Budget.try_charge); a
    bytearray is never charged. `lazy`: an mmap whatever the size, for a payload whose bytes
    have mostly not arrived (a bytearray is zero-filled, committing all of it at once).
    """
    if size < MMAP_MIN and not lazy:
        return bytearray(size)
    cache = budget.cache if budget is not None else None
    if cache is None:
        return _region(size, budget, charged, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    capacity = size_class(size)
    region = cache.take(capacity)
    if region is None:
        region = _region(capacity, budget, charged, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.cache = cache
    else:
        region.charged = charged
        if region.reserved:  # a recycled reservation of this size: assume every page written
            region.committed = capacity
    return region


def reserve(size: int, budget: Budget | None = None) -> Region:
    """`size` bytes of address space for a message of unknown size; charge as it grows.

    Through the budget's RegionCache, like allocate(): a released reservation of the same
    size (every connection of a server reserves max_message_size) is reused with the pages
    its last message had written already mapped.
    """
    cache = budget.cache if budget is not None else None
    region = cache.take(size) if cache is not None else None
    if region is not None:
        region.charged = 0
        return region
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    region = _region(size, budget, 0, flags)
    region.reserved = True
    region.cache = cache
    return region


def release(buf: object) -> None:
    """Return a region's pages to the OS now; other buffers are left to the GC.

    A view still exported by the buffer (a memoryview somebody holds) makes that impossible:
    then the mapping goes when the last view does.
    """
    if isinstance(buf, Region):
        buf.free()
    elif type(buf) is BytesBuffer:  # its memory is the delivered bytes' (or the GC's)
        buf.uncharge()
    elif isinstance(buf, mmap.mmap):
        with contextlib.suppress(BufferError):
            buf.close()
