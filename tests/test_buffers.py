"""RegionCache: released large-message regions are reused, never while something can see them."""

from __future__ import annotations

import os

import numpy as np

from fastws.assembler import RegionAssembler
from fastws.buffers import MMAP_MIN, Budget, Region, RegionCache, allocate, size_class
from fastws.message import Message
from fastws.protocol.connection import Connection

from .protocol.test_large_messages import header, masked, take, write_like_the_kernel

MiB = 1 << 20


def cached_budget(limit: int = 64 * MiB) -> Budget:
    return Budget(1 << 30, RegionCache(limit))


def charged(size: int, budget: Budget) -> Region:
    """A region for a `size`-byte message admitted by the budget, as the connection makes one."""
    assert budget.try_charge(size)
    region = allocate(size, budget, charged=size)
    assert isinstance(region, Region)
    return region


def test_a_released_region_is_reused_for_its_size_class() -> None:
    """The next message of the same class gets the same, already-faulted mapping."""
    budget = cached_budget()
    first = charged(MiB + 200_000, budget)
    first.free()
    assert budget.held == 0  # the budget counts messages, not the cache
    second = charged(MiB + 4096, budget)
    assert second is first and not second.closed
    assert budget.held == MiB + 4096


def test_a_region_still_viewed_is_not_reused_until_the_view_goes() -> None:
    """A memoryview or numpy array on a released message keeps its bytes; reuse waits."""
    budget = cached_budget()
    region = charged(MiB, budget)
    region[:4] = b"keep"
    view = np.frombuffer(region, np.uint8)
    region.free()
    assert budget.held == MiB  # still charged: somebody can still read it
    other = charged(MiB, budget)
    assert other is not region
    other[:4] = b"xxxx"
    assert view[:4].tobytes() == b"keep"
    del view
    other.free()
    assert budget.held == MiB  # parked until the cache looks again (take, trim, over budget)
    assert budget.cache is not None
    budget.cache.trim()
    assert budget.held == 0
    reused = {allocate(MiB, budget), allocate(MiB, budget)}
    assert region in reused and other in reused


def test_the_cache_holds_at_most_its_limit() -> None:
    """Past the limit a released region is unmapped at once, as without a cache."""
    budget = cached_budget(limit=2 * MiB)
    regions = [allocate(MiB, budget) for _ in range(3)]
    for region in regions:
        region.free()  # type: ignore[union-attr]
    assert budget.cache is not None and budget.cache.held == 2 * MiB
    assert [r.closed for r in regions] == [False, False, True]  # type: ignore[union-attr]


def test_trim_unmaps_regions_left_unused() -> None:
    """An idle server gives the memory of its cached buffers back to the OS."""
    cache = RegionCache(64 * MiB, idle=10.0)
    budget = Budget(1 << 30, cache)
    region = allocate(MiB, budget)
    region.free()  # type: ignore[union-attr]
    cache.trim()
    assert not region.closed  # type: ignore[union-attr]
    cache.trim(now=float("inf"))
    assert region.closed and cache.held == 0  # type: ignore[union-attr]


def test_size_classes_round_up_by_at_most_a_quarter() -> None:
    for size in (MMAP_MIN, MMAP_MIN + 1, 3 * MiB + 7, 16 * MiB, 100 * MiB + 1):
        capacity = size_class(size)
        assert size <= capacity <= size * 1.25 and capacity % 4096 == 0


def test_a_reused_region_shows_only_the_new_message() -> None:
    """A smaller message in a recycled region is exactly its own bytes, whatever was there."""
    conn = Connection(max_message_size=64 * MiB, assembler=RegionAssembler(cached_budget()))
    for size in (MiB + 300_000, MiB + 1):  # the same size class, the second one shorter
        payload = os.urandom(size)
        head, key = header(size)
        write_like_the_kernel(conn, head + masked(payload, key), 200_000)
        [message] = take(conn)
        assert isinstance(message, Message)
        assert len(message) == size and message.data == payload
        message.release()


def fragmented(payload: bytes, frag: int) -> bytes:
    """`payload` as a client sends it in frames of `frag` bytes (as Chromium does, 131,000)."""
    out = b""
    for off in range(0, len(payload), frag):
        piece = payload[off : off + frag]
        head, key = header(len(piece), opcode=0 if off else 2, fin=off + frag >= len(payload))
        out += head + masked(piece, key)
    return out


def test_a_fragmented_message_reuses_a_released_reservation() -> None:
    """A message in fragments grows in a reservation of max_message_size address space; the
    next one gets the same mapping back (its pages already faulted in), and the cache counts
    the pages written, not the address space (here 4x its limit)."""
    budget = cached_budget(limit=64 * MiB)
    conn = Connection(max_message_size=256 * MiB, assembler=RegionAssembler(budget))
    regions = []
    for size in (3 * MiB + 5, 2 * MiB + 1):  # the second shorter: only its own bytes
        payload = os.urandom(size)
        write_like_the_kernel(conn, fragmented(payload, 131_000), 131_000)
        [message] = take(conn)
        assert isinstance(message, Message)
        assert message.data == payload
        regions.append(message._buffer)
        message.release()
        assert budget.held == 0
    first, second = regions
    assert second is first and isinstance(first, Region) and len(first) == 256 * MiB
    assert budget.cache is not None and budget.cache.held == 3 * MiB + 5
    budget.cache.trim(now=float("inf"))
    assert first.closed and budget.cache.held == 0
