"""Unmasking kernels: both give RFC 6455 5.3's result, whatever the size, phase or chunking."""

import itertools
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastws.protocol import mask as mask_module
from fastws.protocol.mask import NUMPY_MIN, SMALL_MAX, mask_into, rotate, unmask, unmask_inplace


def reference(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """RFC 6455 5.3: transformed-octet-i = original-octet-i XOR masking-key-octet-(i MOD 4)."""
    return bytes(b ^ key[(i + phase) % 4] for i, b in enumerate(data))


def test_rfc_example() -> None:
    """RFC 6455 5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58."""
    assert unmask(bytes.fromhex("7f9f4d5158"), bytes.fromhex("37fa213d")) == b"Hello"


SIZES = [0, 1, 3, 4, 7, 8, 9, 125, NUMPY_MIN - 1, NUMPY_MIN, NUMPY_MIN + 5, 65536 + 3]
SIZES += [SMALL_MAX - 1, SMALL_MAX, SMALL_MAX + 9]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("phase", [0, 1, 2, 3, 6])
def test_both_kernels_match_reference(size: int, phase: int) -> None:
    """Sizes on both sides of the small-kernel/numpy crossovers, every phase, give the same
    bytes."""
    data, key = os.urandom(size), os.urandom(4)
    expected = reference(data, key, phase)
    assert unmask(data, key, phase) == expected
    buf = bytearray(data)
    unmask_inplace(buf, key, phase)
    assert buf == expected


@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4), st.lists(st.integers(0, 700)))
def test_chunked_unmasking_equals_whole(data: bytes, key: bytes, cuts: list[int]) -> None:
    """Unmasking a payload piece by piece with the phase carried over equals unmasking it whole."""
    points = sorted({min(c * 7, len(data)) for c in cuts} | {0, len(data)})
    buf = bytearray(data)
    view = memoryview(buf)
    for start, stop in itertools.pairwise(points):
        if stop % 2:
            unmask_inplace(view[start:stop], key, start)
        else:
            view[start:stop] = unmask(view[start:stop], key, start)
    assert buf == reference(data, key)


def test_pure_python_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without numpy or the compiled kernels, in-place unmasking of long payloads still works
    (chunked int XOR)."""
    monkeypatch.setattr(mask_module, "_np", None)
    monkeypatch.setattr(mask_module, "_c", None)
    data, key = os.urandom(10_001), os.urandom(4)
    buf = bytearray(data)
    unmask_inplace(buf, key, 1)
    assert buf == reference(data, key, 1)


def test_rotate() -> None:
    assert rotate(b"abcd", 1) == b"bcda"
    assert rotate(b"abcd", 4) == b"abcd"


@pytest.mark.parametrize("n", [0, 3, 1023, 1024, 1029, 65536 + 5])
def test_mask_into_matches_unmask(n: int) -> None:
    """mask_into writes into the caller's buffer exactly what unmask returns."""
    data = os.urandom(n)
    key = os.urandom(4)
    out = bytearray(n)
    mask_into(memoryview(data), key, out)
    assert bytes(out) == unmask(data, key)
