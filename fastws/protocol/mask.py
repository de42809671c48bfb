"""Unmasking kernels (RFC 6455 5.3): XOR the payload with the 4-byte masking key, repeated.

Two kernels, chosen by size. Short payloads: one big-int XOR (`int.from_bytes` of payload and
of the repeated key), which also yields the new `bytes` the caller wanted anyway. Long payloads:
numpy on a uint64 view of a writable buffer, in place.

Crossover, measured with `bench/micro/test_mask.py` on the 2-core dev machine (Python 3.11,
numpy 2.4): the int trick costs 0.7 us at 64 B, 4 us at 1 KiB, 16 us at 4 KiB, 5.5 ms at 1 MiB
(it grows faster than linearly); numpy (copy in, XOR, copy out) costs a flat ~3.5 us up to
4 KiB and 0.1 ms at 1 MiB. They meet near 1 KiB, so `NUMPY_MIN` is 1 KiB.

With the compiled kernels (accel.py) in-place unmasking below `SMALL_MAX` = 64 KiB goes to C
(0.06 us at 64 B, 0.4 us at 16 KiB, 1.9 us at 64 KiB; numpy: a flat ~2.6 us up to there, then
the same pace as C's vectorised loop, ~18 us per MiB), and `unmask()` into new bytes goes to C
at every size: one pass, where numpy needs a copy in and a copy out.

`phase` is how many bytes of the current frame's payload came before this chunk: the key is
applied from byte `phase % 4`, so a payload unmasked in pieces (as it arrives from the socket)
gives the same result as unmasked whole.
"""

from __future__ import annotations

from ctypes import addressof as _addressof
from ctypes import c_char as _c_char
from types import ModuleType
from typing import Any

from .accel import speedups as _c

_np: ModuleType | None
try:  # numpy is a dependency, but the protocol core must stay importable without it
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only where numpy is missing
    _np = None

__all__ = [
    "NUMPY_MIN",
    "SMALL_MAX",
    "mask_into",
    "rotate",
    "unmask",
    "unmask_fragments",
    "unmask_inplace",
]

NUMPY_MIN = 1024
# Below this the small kernel runs: the C one where it was built, else the int trick.
SMALL_MAX = NUMPY_MIN if _c is None else 64 * 1024
# Above this the int trick is chunked, so that the pure-Python fallback stays linear.
_INT_CHUNK = 4096


def rotate(mask: bytes, phase: int) -> bytes:
    """The key as seen from payload offset `phase`."""
    p = phase & 3
    return mask[p:] + mask[:p] if p else mask


def _xor_int(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


# The small kernel: `data` XORed with a phase-0 `mask`, as new bytes.
_xor = _xor_int if _c is None else _c.unmask


def unmask(data: bytes | bytearray | memoryview, mask: bytes, phase: int = 0) -> bytes:
    """Return `data` XORed with `mask` (starting at `phase`) as new bytes; `data` is untouched."""
    if phase & 3:
        mask = rotate(mask, phase)
    n = len(data)
    if n < SMALL_MAX or _c is not None:  # C: one pass into the new bytes at any size
        return _xor(data, mask)
    buf = bytearray(data)
    if _np is None:
        unmask_inplace(buf, mask)
    else:  # a new bytearray's memory comes from malloc: aligned, no address to look up
        _xor_words(buf, n, mask, 0)
    return bytes(buf)


def unmask_inplace(buf: bytearray | memoryview, mask: bytes, phase: int = 0) -> None:
    """XOR a writable buffer with `mask` (starting at `phase`) in place."""
    if phase & 3:
        mask = rotate(mask, phase)
    n = len(buf)
    if _c is not None and (n < SMALL_MAX or _np is None):
        _c.unmask_inplace(buf, mask)
        return
    if n < NUMPY_MIN or _np is None:
        view = memoryview(buf)
        for start in range(0, n, _INT_CHUNK):
            chunk = view[start : start + _INT_CHUNK]
            chunk[:] = _xor_int(chunk, mask)  # _INT_CHUNK is a multiple of 4: phase unchanged
        return
    # The uint64 view starts at an 8-byte aligned address: on an unaligned one numpy goes
    # through a bounce buffer (copy in, XOR, copy out), 3-4x slower. The receive path
    # unmasks each read where it landed in the message, after reads of any length, so the
    # 1-7 bytes before the first aligned word are done apart.
    _xor_words(buf, n, mask, -_addressof(_c_char.from_buffer(buf)) & 7)


def _xor_words(buf: bytearray | memoryview, n: int, mask: bytes, head: int) -> None:
    """numpy's in-place XOR on the uint64 words from byte `head` on (the first aligned
    one); the `head` bytes before them and the 0-7 after, with the int kernel."""
    assert _np is not None
    if head:
        buf[:head] = _xor(buf[:head], mask)
        mask = rotate(mask, head)
    n8 = (n - head) & ~7
    words = _np.frombuffer(buf, dtype=_np.uint64, count=n8 >> 3, offset=head)
    _np.bitwise_xor(words, _np.frombuffer(mask * 2, dtype=_np.uint64)[0], out=words)
    end = head + n8
    if end != n:  # the last 1-7 bytes; n8 is a multiple of 4, so the phase is unchanged
        buf[end:] = _xor(buf[end:], mask)


def mask_into(
    data: bytes | bytearray | memoryview, mask: bytes, out: bytearray | memoryview
) -> None:
    """Write `data` XORed with `mask` into `out` (same length): one pass, no temporary.

    The client's way to mask a large payload: it must copy once (the payload is the
    application's), and this is that one copy.
    """
    n = len(data)
    if _c is not None:
        _c.unmask_into(data, mask, out)
        return
    if n < SMALL_MAX or _np is None:
        view = memoryview(out)
        src = memoryview(data)
        for start in range(0, n, _INT_CHUNK):
            view[start : start + _INT_CHUNK] = _xor_int(src[start : start + _INT_CHUNK], mask)
        return
    n8 = n & ~7
    key = _np.frombuffer(mask * 2, dtype=_np.uint64)[0]
    words = _np.frombuffer(data, dtype=_np.uint64, count=n8 >> 3)
    _np.bitwise_xor(words, key, out=_np.frombuffer(out, dtype=_np.uint64, count=n8 >> 3))
    if n8 != n:
        memoryview(out)[n8:] = _xor_int(memoryview(data)[n8:], mask)


def unmask_fragments(
    data: bytes | bytearray | memoryview,
    pos: int,
    end: int,
    out: bytearray | memoryview | Any | None,
    opos: int,
    oend: int,
    max_frame_size: int,
    max_frames: int,
) -> tuple[int, int, int, bool]:
    """Unmask the whole masked continuation frames at `data[pos:end]` into `out[opos:oend]`.

    One after the other, stopping before anything else: a frame of another kind or with
    reserved bits set, one not all in `data`, longer than `max_frame_size` or than the room
    left in `out`, or after `max_frames` frames or a final frame. Returns `(pos, opos,
    frames, fin)`. The pieces of one fragmented message in one read, in one call; the
    caller's parser judges whatever stopped it. `out` None: only count (`opos` advances by
    the payload bytes the frames would write). The twin of the compiled
    `_speedups.unmask_fragments` (accel.py): same result for every input.
    """
    size = len(out) if out is not None else oend
    if pos < 0 or end > len(data) or pos > end or opos < 0 or oend > size or opos > oend:
        raise ValueError("positions outside the buffers")
    frames = 0
    fin = False
    target = memoryview(out).cast("B") if out is not None else None
    while frames < max_frames and end - pos >= 6:
        b0 = data[pos]
        b1 = data[pos + 1]
        if b0 & 0x7F or not b1 & 0x80:
            break
        length = b1 & 0x7F
        hlen = 2
        if length == 126:
            if end - pos < 8:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            hlen = 4
        elif length == 127:
            if end - pos < 14:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            hlen = 10
        if length > max_frame_size or length > end - pos - hlen - 4 or length > oend - opos:
            break
        start = pos + hlen + 4
        if target is not None:
            key = bytes(data[pos + hlen : pos + hlen + 4])
            target[opos : opos + length] = unmask(data[start : start + length], key)
        pos = start + length
        opos += length
        frames += 1
        if b0 & 0x80:
            fin = True
            break
    return pos, opos, frames, fin
