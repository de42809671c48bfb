"""Unmasking: the int-XOR kernel against numpy, across the sizes where they cross over.

pytest bench/micro/test_mask.py --benchmark-enable --benchmark-only --benchmark-group-by=param:size
"""

import os

import pytest

from fastws.protocol.mask import _xor_int, unmask, unmask_inplace

SIZES = [64, 1024, 4096, 65536, 1 << 20, 16 << 20]
KEY = os.urandom(4)


@pytest.mark.parametrize("size", SIZES)
def test_int_xor(benchmark, size: int) -> None:
    """Pure Python: one big-int XOR, producing new bytes."""
    if size > 1 << 20:
        pytest.skip("the int trick is superlinear; 16 MiB takes seconds")
    data = os.urandom(size)
    assert benchmark(_xor_int, data, KEY) == unmask(data, KEY)


@pytest.mark.parametrize("size", SIZES)
def test_numpy_inplace(benchmark, size: int) -> None:
    """numpy on a uint64 view, in place (the large-payload path)."""
    buf = bytearray(os.urandom(size))
    benchmark(unmask_inplace, buf, KEY)


@pytest.mark.parametrize("size", [65536, 1 << 20, 4 << 20])
def test_numpy_inplace_offset(benchmark, size: int) -> None:
    """In place on a chunk at an odd offset, as the receive path unmasks a read that landed
    after a previous one of arbitrary length (the uint64 view is then unaligned)."""
    buf = bytearray(os.urandom(size + 8))
    view = memoryview(buf)[3 : 3 + size]
    expected = unmask(bytes(view), KEY, 1)
    unmask_inplace(view, KEY, 1)
    assert view == expected
    benchmark(unmask_inplace, view, KEY, 1)


@pytest.mark.parametrize("size", SIZES)
def test_unmask_to_bytes(benchmark, size: int) -> None:
    """What the receive loop calls for a complete frame: the kernel chosen by size."""
    data = os.urandom(size)
    benchmark(unmask, data, KEY)
