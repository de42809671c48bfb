"""Where received payloads live while they are assembled, and what they cost the process.

Small payloads are plain `bytes` made by the unmasking step. A frame whose payload does not
arrive in one read gets a destination buffer sized from its declared length, which the I/O
layer may hand to the kernel directly (`BufferedProtocol.get_buffer`). From `MMAP_MIN` on that
buffer is an anonymous mmap (a `Region`): its pages are committed only when written, so a peer
that declares a 2 GiB frame and sends nothing costs address space, not memory, and releasing
it gives the memory back to the OS at once (malloc may keep freed memory for itself).

A fragmented message whose total size is unknown grows inside a `reserve()`d region of
`max_message_size` bytes of address space (MAP_NORESERVE): only the pages written count, and
it never moves, so no fragment is copied twice.

`Budget` bounds the bytes held in regions by one process: a new large message waits (its
connection stops reading) while the others hold more than the budget.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
from collections.abc import Callable

__all__ = ["MMAP_MIN", "Budget", "Region", "allocate", "release", "reserve"]

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

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: list[Callable[[], None]] = []

    def try_charge(self, size: int) -> bool:
        if self.held and self.held + size > self.limit:
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


class Region(mmap.mmap):
    """An anonymous mapping that gives its charge back to a `Budget` when it goes away."""

    budget: Budget | None = None
    charged = 0

    def grow_charge(self, size: int) -> None:
        if self.budget is not None:
            self.budget.charge(size)
        self.charged += size

    def free(self) -> None:
        """Unmap now if no view is exported, and give the charge back either way later."""
        with contextlib.suppress(BufferError):
            self.close()
        if self.closed:
            self._uncharge()

    def _uncharge(self) -> None:
        charged, self.charged = self.charged, 0
        if charged and self.budget is not None:
            self.budget.free(charged)

    def __del__(self) -> None:
        self._uncharge()


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
    return _region(size, budget, charged, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def reserve(size: int, budget: Budget | None = None) -> Region:
    """`size` bytes of address space for a message of unknown size; charge as it grows."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    return _region(size, budget, 0, flags)


def release(buf: object) -> None:
    """Return a region's pages to the OS now; other buffers are left to the GC.

    A view still exported by the buffer (a memoryview somebody holds) makes that impossible:
    then the mapping goes when the last view does.
    """
    if isinstance(buf, Region):
        buf.free()
    elif isinstance(buf, mmap.mmap):
        with contextlib.suppress(BufferError):
            buf.close()
