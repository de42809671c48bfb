"""Where mmap starts to pay for message buffers (buffers.MMAP_MIN).

Each round allocates a buffer, writes every page (as a received payload would) and frees it.
Compare `bytearray` (malloc) with an anonymous `Region` at each size:
    pytest bench/micro/test_buffers.py --benchmark-only --benchmark-group-by=param:size
"""

from __future__ import annotations

import pytest

from fastws.buffers import Budget, Region, RegionCache, allocate

KiB = 1024
SIZES = [64 * KiB, 256 * KiB, 1024 * KiB, 16 * 1024 * KiB]


def _fill_and_free_bytearray(size: int, chunk: bytes) -> None:
    buf = bytearray(size)
    view = memoryview(buf)
    for pos in range(0, size, len(chunk)):
        view[pos : pos + len(chunk)] = chunk
    view.release()
    del buf


def _fill_and_free_region(size: int, chunk: bytes) -> None:
    region = Region(-1, size)
    view = memoryview(region)
    for pos in range(0, size, len(chunk)):
        view[pos : pos + len(chunk)] = chunk
    view.release()
    region.free()


@pytest.mark.parametrize("size", SIZES)
def test_bytearray(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    chunk = b"\x5a" * (64 * KiB) if size >= 64 * KiB else b"\x5a" * size
    benchmark(_fill_and_free_bytearray, size, chunk)


@pytest.mark.parametrize("size", SIZES)
def test_mmap_region(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    chunk = b"\x5a" * (64 * KiB)
    benchmark(_fill_and_free_region, size, chunk)


def _fill_and_free_cached(size: int, chunk: bytes, budget: Budget) -> None:
    region = allocate(size, budget)
    view = memoryview(region)
    for pos in range(0, size, len(chunk)):
        view[pos : pos + len(chunk)] = chunk
    view.release()
    region.free()  # type: ignore[union-attr]


@pytest.mark.parametrize("size", SIZES[2:])
def test_cached_region(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    """What a server pays per large message once RegionCache has a region of its class."""
    chunk = b"\x5a" * (64 * KiB)
    budget = Budget(1 << 30, RegionCache(64 << 20))
    benchmark(_fill_and_free_cached, size, chunk, budget)


def test_allocate_picks_by_size() -> None:
    """The benchmark measures what allocate() actually returns on each side of MMAP_MIN."""
    assert type(allocate(256 * KiB)) is bytearray
    assert type(allocate(1024 * KiB)) is Region
