"""The compiled kernels (fastws/protocol/_speedups.c) and their pure-Python twins agree on every
input, the C module is built wherever a compiler is, and the pure-Python path passes the
protocol, callback-handler and Message tests on its own (FASTWS_NO_SPEEDUPS=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastws.protocol import accel, frames
from fastws.protocol.mask import _xor_int

ROOT = Path(__file__).resolve().parents[2]


def _compiled() -> ModuleType:
    try:
        from fastws.protocol import _speedups
    except ImportError:
        pytest.skip("fastws.protocol._speedups is not built here")
    return _speedups


def test_built_where_a_compiler_and_headers_are() -> None:
    """`pip install` builds the C module when it can: a missing one would silently cost the
    small-message path its speed."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(os.environ.get("CC", "cc")) is None or not headers.exists():
        pytest.skip("no C compiler or Python headers: the pure-Python kernels are the build")
    from fastws.protocol import _speedups  # ImportError is the failure

    if not os.environ.get("FASTWS_NO_SPEEDUPS"):
        assert accel.speedups is _speedups


def _masked(opcode_byte: int, payload: bytes, key: bytes) -> bytes:
    return bytes((opcode_byte, 0x80 | len(payload))) + key + _xor_int(payload, key)


frames_st = st.builds(
    _masked,
    st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0x92]),
    st.one_of(st.binary(max_size=125), st.text(max_size=40).map(str.encode)),
    st.binary(min_size=4, max_size=4),
)


@given(
    st.one_of(frames_st, st.binary(max_size=140)),
    st.integers(-1, 140),
    st.integers(0, 200),
    st.integers(0, 200),
    st.binary(max_size=8),
)
def test_lone_frame_twins_agree(
    data: bytes, n: int, max_message: int, max_frame: int, tail: bytes
) -> None:
    """Same result from C and Python for valid frames, damaged ones, wrong lengths, limits and
    invalid UTF-8: the fast path never decides differently depending on the build."""
    c = _compiled()
    data += tail
    n = min(n, len(data)) if n >= 0 else len(data) - len(tail)
    assert c.lone_frame(data, n, max_message, max_frame) == frames.lone_frame(
        data, n, max_message, max_frame
    )


def test_lone_frame_cases() -> None:
    """What the fast path accepts and what it leaves to the general parser."""
    c = _compiled()
    key = b"\x01\x02\x03\x04"
    for impl in (c.lone_frame, frames.lone_frame):
        text = _masked(0x81, "héllo".encode(), key)
        assert impl(text, len(text), 1 << 20, 1 << 20) == "héllo"
        binary = _masked(0x82, b"\x00\xff" * 62, key)
        assert impl(binary, len(binary), 1 << 20, 1 << 20) == b"\x00\xff" * 62
        assert impl(binary, len(binary), 1 << 70, 1 << 70) == b"\x00\xff" * 62  # huge limits
        assert impl(binary, len(binary), 123, 1 << 20) is None  # over max_message_size
        assert impl(binary, len(binary) - 1, 1 << 20, 1 << 20) is None  # incomplete
        assert impl(binary + b"\x82", len(binary) + 1, 1 << 20, 1 << 20) is None  # more follows
        bad = _masked(0x81, b"\xff\xfe", key)
        assert impl(bad, len(bad), 1 << 20, 1 << 20) is None  # invalid UTF-8: 1007 elsewhere
        unmasked = bytes((0x82, 2)) + b"hi" + b"\0\0\0\0"
        assert impl(unmasked, len(unmasked), 1 << 20, 1 << 20) is None


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4))
def test_unmask_twins_agree(data: bytes, key: bytes) -> None:
    """C unmasking equals the int kernel, new bytes and in place, for any length."""
    c = _compiled()
    assert c.unmask(data, key) == _xor_int(data, key)
    assert c.unmask(memoryview(data)[1:], key) == _xor_int(data[1:], key)
    buf = bytearray(data)
    c.unmask_inplace(buf, key)
    assert buf == _xor_int(data, key)


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_unmask_into_equals_copy_then_unmask(data: bytes, key: bytes, offset: int) -> None:
    """The one-pass copy-and-unmask writes what a copy and the int kernel give, at any
    alignment of source and target, and nothing outside its target."""
    c = _compiled()
    out = bytearray(b"\xaa" * (len(data) + 16))
    c.unmask_into(memoryview(data), key, memoryview(out)[offset : offset + len(data)])
    assert out[offset : offset + len(data)] == _xor_int(data, key)
    assert out[:offset] == b"\xaa" * offset and out[offset + len(data) :] == b"\xaa" * (16 - offset)


def _frame(b0: int, payload: bytes, key: bytes, masked: bool = True) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((b0, (0x80 if masked else 0) | n))
    elif n < 65536:
        head = bytes((b0, (0x80 if masked else 0) | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, (0x80 if masked else 0) | 127)) + n.to_bytes(8, "big")
    return head + (key + _xor_int(payload, key) if masked else payload)


fragment_st = st.builds(
    _frame,
    st.sampled_from([0x00, 0x00, 0x00, 0x80, 0x10, 0x40, 0x02, 0x82, 0x89, 0x0F]),
    st.one_of(st.binary(max_size=140), st.integers(0, 70_000).map(lambda n: b"\x5a" * n)),
    st.binary(min_size=4, max_size=4),
    st.booleans().map(lambda unmasked: not unmasked),
)


@given(
    st.lists(fragment_st, max_size=6),
    st.integers(0, 3),
    st.integers(0, 20),
    st.integers(0, 200_000),
    st.integers(0, 3),
    st.sampled_from([0, 125, 140, 5_000, 1 << 62]),
    st.sampled_from([0, 1, 2, 5, 1 << 62]),
)
def test_unmask_fragments_twins_agree(
    frames: list[bytes],
    pos: int,
    cut: int,
    room: int,
    opos: int,
    max_frame: int,
    max_frames: int,
) -> None:
    """The run of continuation frames: C and Python take the same frames and stop at the
    same one — another opcode, reserved bits, no mask, an incomplete frame (the data cut
    short), no room left, the frame limit, the frame count, a final frame — and write the
    same bytes, nothing outside the room; counting only (out None) takes the same frames."""
    c = _compiled()
    from fastws.protocol.mask import unmask_fragments

    data = b"\x00" * pos + b"".join(frames)
    end = max(pos, len(data) - cut)
    size = opos + room + 8
    out_c, out_py = bytearray(b"\xaa" * size), bytearray(b"\xaa" * size)
    args = (pos, end)
    limits = (opos, opos + room, max_frame, max_frames)
    got = c.unmask_fragments(data, *args, out_c, *limits)
    assert got == unmask_fragments(data, *args, out_py, *limits)
    assert out_c == out_py
    assert out_c[opos + room :] == b"\xaa" * 8
    # Counting only (no buffer): the same frames, the same stop.
    assert c.unmask_fragments(data, *args, None, *limits) == got
    assert unmask_fragments(data, *args, None, *limits) == got


def test_unmask_rejects_bad_arguments() -> None:
    """A wrong key or a read-only target is a Python exception, not memory corruption."""
    c = _compiled()
    with pytest.raises(ValueError):
        c.unmask(b"abc", b"key")
    with pytest.raises(BufferError):
        c.unmask_inplace(b"read-only", b"abcd")
    with pytest.raises(ValueError):
        c.lone_frame(b"\x82\x80", 6, 10, 10)  # n beyond the buffer
    with pytest.raises(ValueError):
        c.unmask_into(b"abc", b"abcd", bytearray(2))  # lengths differ
    with pytest.raises(BufferError):
        c.unmask_into(b"abc", b"abcd", b"xyz")  # read-only target
    with pytest.raises(ValueError):
        c.unmask_fragments(b"abc", 0, 4, bytearray(4), 0, 4, 10, 10)  # end beyond data
    with pytest.raises(ValueError):
        c.unmask_fragments(b"abc", 0, 3, bytearray(4), 0, 5, 10, 10)  # room beyond out
    with pytest.raises(BufferError):
        c.unmask_fragments(b"abc", 0, 3, b"read-only", 0, 4, 10, 10)


class _Region(bytearray):
    """A buffer that is not bytes, as a large message's region is."""


@pytest.mark.parametrize("buffer", [b"", b"abc", bytearray(b"xyz"), _Region(b"region")])
@pytest.mark.parametrize("size", [None, 2])
def test_message_base_twins_agree(buffer: bytes | bytearray, size: int | None) -> None:
    """The compiled MessageBase (every binary message a handler gets is one) and the
    pure-Python `_MessageBase` hold, report and give back a buffer the same way: len, buffer,
    released, and release() idempotent, handing a non-bytes buffer to `_give_back` once."""
    from fastws.message import _MessageBase

    c = _compiled()
    results = []
    for base in (c.MessageBase, _MessageBase):

        class Held(base):  # type: ignore[valid-type,misc]
            __slots__ = ()
            given_back: list[object] = []  # noqa: RUF012 (the test's record)

            def _give_back(self, buf: object) -> None:
                self.given_back.append(buf)

        held = Held(buffer) if size is None else Held(buffer, size)
        first = (len(held), held.buffer is buffer, held.released, held._buffer is buffer)
        held.release()
        held.release()
        results.append(
            (first, held.buffer, held.released, len(held), [b is buffer for b in Held.given_back])
        )
        assert Held(buffer=buffer, size=3)._size == 3  # keywords, as Message(...) allows
        with pytest.raises(TypeError):
            Held()
        with pytest.raises(TypeError):
            Held(object())  # no len() and no size
    assert results[0] == results[1]
    assert results[0][4] == ([] if type(buffer) is bytes else [True])


@given(st.binary(max_size=300), st.integers(0, 300))
def test_bytes_target_twins_agree(data: bytes, cut: int) -> None:
    """The compiled BytesTarget (fastws.asgi receives a large message straight into the
    bytes it delivers) and its pure-Python twin: `size` writable bytes, then take() returns
    what was written as bytes, once. The compiled one hands out the object written (no copy)
    and refuses views from then on; a view taken before stays valid."""
    from fastws.buffers import _BytesTarget

    c = _compiled()
    results = []
    for kind in (c.BytesTarget, _BytesTarget):
        target = kind(len(data))
        view = memoryview(target)
        view[:cut] = data[:cut]
        view[cut:] = data[cut:]
        assert len(target) == len(data) and not target.taken
        taken = target.take()
        results.append((type(taken), taken, len(target), target.taken))
        with pytest.raises(RuntimeError):
            target.take()
        assert bytes(view) == data
    assert results[0] == results[1] == (bytes, data, len(data), True)
    target = c.BytesTarget(len(data))
    memoryview(target)[:] = data
    assert target.take() == data
    with pytest.raises(BufferError):
        memoryview(target)
    with pytest.raises(ValueError):
        c.BytesTarget(-1)


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_bytes_target_resize_twins_agree(data: bytes, sizes: list[int]) -> None:
    """BytesTarget.resize (a fragmented message grows in the bytes it is delivered in): both
    keep the first min(old, new) bytes written, refuse while a view is held (BufferError)
    unless the size does not change, and after take(); the new bytes are written before
    they are read (the compiled one does not zero them)."""
    from fastws.buffers import _BytesTarget

    c = _compiled()
    results = []
    for kind in (c.BytesTarget, _BytesTarget):
        target = kind(len(data))
        memoryview(target)[:] = data
        kept = data
        log = []
        for size in sizes:
            view = memoryview(target)
            target.resize(len(target))  # the same size: no-op, even with a view held
            if size != len(target):
                with pytest.raises(BufferError):
                    target.resize(size)
            view.release()
            target.resize(size)
            kept = kept[:size]
            memoryview(target)[len(kept) :] = bytes(i % 251 for i in range(size - len(kept)))
            kept = bytes(memoryview(target))
            log.append((len(target), kept))
        with pytest.raises(ValueError):
            target.resize(-1)
        taken = target.take()
        with pytest.raises(RuntimeError):
            target.resize(1)
        results.append((taken, log))
    assert results[0] == results[1]
    assert results[0][0] == (results[0][1][-1][1] if sizes else data)


def test_pure_python_path_passes_the_suites() -> None:
    """FASTWS_NO_SPEEDUPS=1 runs the twins: the protocol core's tests, the callback
    handler's and Message's (real server processes, which inherit the variable) pass on
    them too."""
    env = dict(os.environ, FASTWS_NO_SPEEDUPS="1")
    check = subprocess.run(
        [sys.executable, "-c", "from fastws.protocol import accel; print(accel.speedups)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "None"
    suites = [
        "tests/protocol",
        "tests/test_listener.py",
        "tests/test_message.py",
        "-k",
        "not pure_python_path",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *suites],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
