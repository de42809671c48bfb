"""Where a binary message's payload is assembled, and what memory it may take: the seam
between the protocol core and the memory policy of the layer that runs it.

The core decides what goes where (frames, fragments, the fill level of the message in
progress, when a streamed piece is full); an `Assembler` decides what the memory is and
whether a new large message may have it now. The I/O layer injects its own
(`fastws.assembler.RegionAssembler`: anonymous mmap regions under a worker-wide budget,
delivered as zero-copy `fastws.message.Message`s); used alone, the core falls back to
`PlainAssembler` below: bytearrays, delivered as `bytes`, never waiting.

An assembler holds no per-message state (one serves every connection of a process): the
core passes it the buffer of the message in progress and how much of it is filled.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from typing import Protocol

from .events import Blocked, Body

__all__ = ["Assembler", "Buffer", "PlainAssembler"]

#: A message buffer the kernel may write into (`Connection.payload_target()`).
Buffer = bytearray | mmap.mmap

#: PlainAssembler maps a frame's buffer (lazily committed) from this declared size on.
LAZY_MIN = 64 * 1024


class Assembler(Protocol):
    def admit(self, length: int, whole: bool, patient: bool) -> Blocked | None:
        """The first frame of a new binary message declares `length` bytes and its payload is
        still arriving (`whole`: the message is this one frame). None: go on, `begin()` comes
        next (memory it needs is accounted for); else why the connection must wait
        (REGION only when `patient`: the I/O layer resumes on a later loop iteration)."""
        ...

    def wait(self, wake: Callable[[], None]) -> None:
        """After MEMORY: call `wake()` (which must only schedule) once memory was freed."""
        ...

    def begin(self, length: int, whole: bool, lazy: bool, limit: int) -> Buffer:
        """The buffer for an admitted message's first `length` bytes. `lazy`: most of them have
        not arrived yet (commit memory as it is written, if the assembler can). `limit`:
        max_message_size, for a message of unknown size."""
        ...

    def room(
        self,
        buf: Buffer | None,
        filled: int,
        length: int,
        lazy: bool,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        """`buf` (or a new buffer holding its `filled` bytes) with room for `length` more.
        `final`: they are the message's last (its size is `filled + length`)."""
        ...

    def append(
        self,
        buf: Buffer | None,
        filled: int,
        payload: bytes | bytearray | memoryview,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        """`payload` copied after the `filled` bytes of `buf`; the buffer that holds them.
        `final`: the message's last bytes."""
        ...

    def piece(self, size: int) -> Buffer:
        """A buffer for the next piece of a streamed message (at most `size` bytes)."""
        ...

    def message(self, buf: Buffer | None, size: int) -> bytes | Body:
        """The complete binary message of `size` bytes in `buf`, as delivered to the handler."""
        ...

    def chunk(self, buf: Buffer | None, size: int) -> Body:
        """A streamed piece of `size` bytes in `buf`, as delivered (`Chunk.data`)."""
        ...

    def release(self, buf: Buffer | None) -> None:
        """A message in progress was dropped (failure, connection lost): free its memory."""
        ...


class PlainAssembler:
    """Bytearrays, delivered as `bytes`: the default for the core used alone (tests, fuzzing,
    other I/O layers). A frame whose payload has mostly not arrived gets an anonymous mmap of
    its declared size instead (pages cost memory only once written: a declared 2 GiB frame
    costs nothing by itself); a delivered message is a copy. The servers and clients of this
    package inject `fastws.assembler.RegionAssembler` (no copy, a memory budget) instead."""

    __slots__ = ()

    def admit(self, length: int, whole: bool, patient: bool) -> Blocked | None:
        return None

    def wait(self, wake: Callable[[], None]) -> None:
        wake()  # never asked: admit() never answers MEMORY

    def begin(self, length: int, whole: bool, lazy: bool, limit: int) -> Buffer:
        return self.room(None, 0, length, lazy, limit)

    def room(
        self,
        buf: Buffer | None,
        filled: int,
        length: int,
        lazy: bool,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        need = filled + length
        if buf is None:
            return mmap.mmap(-1, need) if lazy and need >= LAZY_MIN else bytearray(need)
        if len(buf) >= need:
            return buf
        if type(buf) is bytearray:
            try:
                buf.extend(bytes(need - len(buf)))  # amortized growth, as for any bytearray
            except BufferError:  # a view of it is still held: move instead
                pass
            else:
                return buf
        grown = bytearray(need)
        grown[:filled] = memoryview(buf)[:filled]
        self.release(buf)
        return grown

    def append(
        self,
        buf: Buffer | None,
        filled: int,
        payload: bytes | bytearray | memoryview,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        if type(buf) is bytearray and len(buf) == filled:
            try:
                buf += payload
            except BufferError:  # a view of it is still held: room() moves it
                pass
            else:
                return buf
        buf = self.room(buf, filled, len(payload), False, limit)
        buf[filled : filled + len(payload)] = payload
        return buf

    def piece(self, size: int) -> Buffer:
        return bytearray(size)

    def message(self, buf: Buffer | None, size: int) -> bytes:
        if buf is None:
            return b""
        message = bytes(memoryview(buf)[:size])
        self.release(buf)
        return message

    def chunk(self, buf: Buffer | None, size: int) -> bytes:
        return self.message(buf, size)

    def release(self, buf: Buffer | None) -> None:
        if type(buf) is mmap.mmap:
            with contextlib.suppress(BufferError):  # a view is held: unmapped when it goes
                buf.close()


PLAIN: PlainAssembler = PlainAssembler()
