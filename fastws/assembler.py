"""Message assembly and memory admission for the I/O layer: the `Assembler` the servers and
clients of this package inject into the protocol core (see protocol/assembly.py).

Small messages are assembled in bytearrays and delivered as `bytes`. From `MMAP_MIN` on (on
a server also from a first fragment of `RESERVE_FROM` bytes on) a message lives in an
anonymous mmap region (see buffers) that the kernel writes into and the handler receives as
a zero-copy `Message` (`BytesAssembler`, for ASGI's bytes: every binary message is received
into the `bytes` object it is delivered as); a new large message is admitted against the process's `Budget` (its
connection stops reading while the others hold too much) and, when a region of its size
class is about to come back from a transport, waits one loop iteration for it instead of
mapping a second one.
"""

from __future__ import annotations

from collections.abc import Callable

from .buffers import (
    MMAP_MIN,
    Budget,
    BytesBuffer,
    Region,
    allocate,
    release,
    reserve,
    size_class,
)
from .message import Message
from .protocol.assembly import Buffer
from .protocol.events import Blocked

__all__ = ["RESERVE_FROM", "UNBOUNDED", "BytesAssembler", "RegionAssembler"]

#: Where regions are recycled, a fragmented message whose first fragment is this large is
#: assembled in a reservation from the start (a `Message` even if it ends below MMAP_MIN).
RESERVE_FROM = 64 << 10

# What a growing bytearray is extended with. A bytes(n) per extension is calloc'ed, and above
# glibc's mmap threshold mapped and faulted in afresh each time (a 1 MiB message in 16 KiB
# fragments: ~10 such per message); this one is read only, so its pages stay the kernel's
# shared zero page and cost no memory.
_ZEROS_SIZE = 256 << 10
_ZEROS = memoryview(bytes(_ZEROS_SIZE))


class RegionAssembler:
    """One per process (or per client connection): `budget` bounds the bytes its large
    messages hold (None: unbounded, each region unmapped at release)."""

    __slots__ = ("budget",)

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget

    def admit(self, length: int, whole: bool, patient: bool) -> Blocked | None:
        budget = self.budget
        if length < MMAP_MIN or budget is None:
            return None
        cache = budget.cache
        if patient and whole and cache is not None and cache.soon_free(size_class(length)):
            return Blocked.REGION  # the connection resumes next iteration, admit() again
        if not budget.try_charge(length):
            return Blocked.MEMORY  # ... once memory is freed (wait)
        return None

    def wait(self, wake: Callable[[], None]) -> None:
        if self.budget is not None:
            self.budget.wait(wake)

    def begin(self, length: int, whole: bool, lazy: bool, limit: int) -> Buffer:
        # What admit() charged: a large message under a budget.
        charged = length if length >= MMAP_MIN and self.budget is not None else 0
        return self._room(None, 0, length, limit, exact=whole, charged=charged, lazy=lazy)

    def _small_max(self) -> int:
        """Below this a message with no buffer yet starts in a bytearray: MMAP_MIN, or
        RESERVE_FROM where released regions are recycled (a server's budget with a cache;
        elsewhere each region would be mapped and faulted in afresh per message)."""
        budget = self.budget
        return RESERVE_FROM if budget is not None and budget.cache is not None else MMAP_MIN

    def room(
        self,
        buf: Buffer | None,
        filled: int,
        length: int,
        lazy: bool,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        return self._room(buf, filled, length, limit, lazy=lazy)

    def _room(
        self,
        buf: Buffer | None,
        filled: int,
        length: int,
        limit: int,
        exact: bool = False,
        charged: int = 0,
        lazy: bool = False,
    ) -> Buffer:
        """A buffer holding `buf`'s `filled` bytes with room for `length` more.

        `exact`: the whole message is this one frame, allocate exactly. A fragmented message
        of unknown size grows in a bytearray while small, then moves once (under MMAP_MIN
        bytes to copy) into a reservation of `limit` (max_message_size) bytes that never
        moves again; on a server (regions recycled), one whose first fragment is RESERVE_FROM
        bytes or more starts in the reservation (a browser's large message: Chromium sends
        131,000-byte fragments), so it is neither zero-filled fragment by fragment nor moved.
        `charged`: budget bytes already taken for it. `lazy`: map it even when small.
        """
        need = filled + length
        if buf is None and (exact or need < self._small_max()):
            return allocate(need, self.budget, charged, lazy=lazy)
        if buf is not None and len(buf) >= need:
            if type(buf) is Region and need > buf.charged:
                buf.grow_charge(need - buf.charged)
            return buf
        if type(buf) is bytearray and need < MMAP_MIN:
            try:
                grow = need - len(buf)
                while grow > 0:  # zeros from one shared buffer: no temporary bytes per call
                    step = min(grow, _ZEROS_SIZE)
                    buf += _ZEROS[:step]
                    grow -= step
            except BufferError:  # somebody still holds a view of it: move instead
                moved = bytearray(need)
                moved[:filled] = memoryview(buf)[:filled]
                return moved
            return buf
        region = reserve(max(limit, need), self.budget)
        if buf is not None:
            region[:filled] = memoryview(buf)[:filled]
            if type(buf) is Region:
                charged += buf.charged
                buf.charged = 0
            release(buf)
        region.charged = charged
        region.grow_charge(max(0, need - charged))
        return region

    def append(
        self,
        buf: Buffer | None,
        filled: int,
        payload: bytes | bytearray | memoryview,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        n = len(payload)
        if type(buf) is bytearray and len(buf) == filled and filled + n < MMAP_MIN:
            try:
                buf += payload
            except BufferError:  # a view of it is held: _room moves it
                pass
            else:
                return buf
        buf = self._room(buf, filled, n, limit)
        buf[filled : filled + n] = payload
        return buf

    def piece(self, size: int) -> Buffer:
        # Through the budget's RegionCache: a released piece's pages are reused by the next,
        # not faulted in afresh each MiB. Pieces are not charged (max_queue bounds them).
        return allocate(size, self.budget)

    def message(self, buf: Buffer | None, size: int) -> bytes | Message:
        if buf is None:
            return b""
        if type(buf) is bytearray:  # small: bytes, like a message read in one piece
            return bytes(buf) if len(buf) == size else bytes(memoryview(buf)[:size])
        return Message(buf, size)  # large: handed over where it was received

    def chunk(self, buf: Buffer | None, size: int) -> Message:
        return Message(b"" if buf is None else buf, size)

    def release(self, buf: Buffer | None) -> None:
        release(buf)


def _first_size(length: int, limit: int) -> int:
    """The bytes a fragmented message starts with, its first fragment `length` bytes long:
    from RESERVE_FROM on (a browser's large message) at least MMAP_MIN, so that a 1 MiB one
    in Chromium's 131,000-byte fragments grows once, not three times (with four such messages
    arriving at once, most growths moved: d@chromium 7 % more CPU per MB, 20 % more peak
    memory); below it exactly the fragment."""
    if length < RESERVE_FROM:
        return length
    return max(length, min(limit, MMAP_MIN))


#: Why a fragmented message whose first fragment is under RESERVE_FROM is assembled as
#: before (bytearray, then a region; one copy at delivery), not grown in its bytes: from small
#: fragments (WebSocket-Node's 16 KiB) the bytes double a dozen times, and with several
#: large messages in flight the heap outgrows what malloc keeps, faulted in afresh for every
#: message (`python -P bench/large_receive.py --asgi --conns 4 --size 16MiB --frag 16384`:
#: 3.07 ms per message through a region, 14.03 grown in the bytes). Browsers' fragments
#: (Chromium's 131,000 bytes) start at MMAP_MIN and take the bytes path.
_SMALL_FIRST = RESERVE_FROM

#: The largest block malloc serves from its heap once a worker has set M_MMAP_THRESHOLD to
#: it (glibc's maximum, see fastws.asgi.app): bytes that grow to it would be mapped afresh,
#: and faulted in page by page, for every message. A fragmented message that grows past 16
#: MiB moves into a region instead (`python -P bench/large_receive.py --asgi --conns 2 --size
#: 32MiB --frag 131000`: 18.7 ms per message grown in the bytes, 4,096 faults each; 7.4 ms
#: through a region with one copy).
_HEAP_BLOCK_MAX = 32 << 20


class BytesAssembler(RegionAssembler):
    """For connections whose binary messages are delivered as `bytes` (fastws.asgi, to an
    application that did not ask for the zero-copy extension): a binary message is received
    and unmasked straight into the `bytes` object the application gets (a `BytesBuffer`),
    instead of into a region that is then copied.

    A message in one frame gets exactly its size. A fragmented one (its size unknown until
    its last fragment: Chromium sends 131,000-byte ones) whose first fragment is RESERVE_FROM
    or more (smaller ones: see `_SMALL_FIRST`) starts at its first fragment's size
    (at least MMAP_MIN from a fragment of RESERVE_FROM on: `_first_size`) and grows by
    realloc (`BytesBuffer.resize`), at least doubling, so a block that cannot grow where it
    is (malloc copies it) is copied at most about once over the message; the last
    fragment's header gives the exact size (`final`), and the bytes are cut to it then,
    before its payload is read into them. The budget is charged with the bytes
    received from MMAP_MIN on, as a region's reservation is, until the application gets
    them.

    Bounded by the heap malloc keeps (see `_HEAP_BLOCK_MAX`, `growing`): a growth that
    would take the bytes of the messages growing at once past the budget's cache limit
    (buffer_cache), or one message's past `_HEAP_BLOCK_MAX`, moves that message into a
    region instead (its bytes so far copied once), and it is copied at delivery as before."""

    __slots__ = ("growing",)

    def __init__(self, budget: Budget | None = None) -> None:
        super().__init__(budget)
        #: The bytes of the fragmented messages growing in their BytesBuffers now.
        self.growing = 0

    def _heap_room(self, more: int) -> bool:
        """Whether the messages growing in bytes may take `more` bytes: within what malloc
        keeps of a worker's heap (buffer_cache, `fastws.asgi.app._keep_malloc_memory`)."""
        budget = self.budget
        cache = budget.cache if budget is not None else None
        return cache is None or self.growing + more <= cache.limit

    def _count(self, buf: BytesBuffer, size: int) -> None:
        """`buf`, still growing, now `size` bytes in the total (0: no longer counted)."""
        self.growing += size - buf.growing
        buf.growing = size

    def admit(self, length: int, whole: bool, patient: bool) -> Blocked | None:
        # No region is taken: none to wait an iteration for.
        return super().admit(length, whole, False)

    def begin(self, length: int, whole: bool, lazy: bool, limit: int) -> Buffer:
        # What admit() charged (a large message under a budget) stays charged until the
        # application gets the bytes. Not zero-filled: lazy by nature (malloc; a large one's
        # pages are committed as the kernel writes them).
        size = length if whole else _first_size(length, limit)
        if not whole and (length < _SMALL_FIRST or not self._heap_room(size)):
            return super().begin(length, whole, lazy, limit)
        charged = length if length >= MMAP_MIN and self.budget is not None else 0
        buf = BytesBuffer.new(size, self.budget, charged)
        if not whole:
            self._count(buf, size)
        return buf

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
        if type(buf) is not BytesBuffer:
            size = need if final else _first_size(need, limit)
            if buf is not None or not (final or (need >= _SMALL_FIRST and self._heap_room(size))):
                # not one of ours, a message whose first fragment is small (see
                # _SMALL_FIRST), or no heap left for it: assembled as a region would be,
                # copied at delivery
                return super().room(buf, filled, length, lazy, limit, final)
            buf = BytesBuffer.new(size, self.budget)
            self._count(buf, 0 if final else size)
        else:
            size = len(buf)
            if final:
                size = need
            elif size < need:
                size = max(need, min(2 * size, limit))
                if size >= _HEAP_BLOCK_MAX or not self._heap_room(size - buf.growing):
                    self._count(buf, 0)  # into a region: this copy now, one at delivery
                    return self._room(buf, filled, length, limit)
            if size != len(buf):
                buf = self._resized(buf, filled, size)
            self._count(buf, 0 if final else size)
        if need >= MMAP_MIN and self.budget is not None and need > buf.charged:
            self.budget.charge(need - buf.charged)
            buf.charged = need
        return buf

    def _resized(self, buf: BytesBuffer, filled: int, size: int) -> BytesBuffer:
        """`buf` made `size` bytes long in place (realloc), or, while a view of it is still
        held, a new BytesBuffer of `size` bytes holding its first `filled` and its charge."""
        try:
            buf.resize(size)
        except BufferError:
            return self._moved(buf, filled, size)
        return buf

    def _moved(self, buf: BytesBuffer, filled: int, size: int) -> BytesBuffer:
        """A new BytesBuffer of `size` bytes holding `buf`'s first `filled`, and its charge."""
        moved = BytesBuffer.new(size, self.budget, buf.charged)
        buf.charged = 0
        moved.growing, buf.growing = buf.growing, 0
        memoryview(moved)[:filled] = memoryview(buf)[:filled]
        return moved

    def append(
        self,
        buf: Buffer | None,
        filled: int,
        payload: bytes | bytearray | memoryview,
        limit: int,
        final: bool = False,
    ) -> Buffer:
        n = len(payload)
        buf = self.room(buf, filled, n, False, limit, final)
        memoryview(buf)[filled : filled + n] = payload
        return buf

    def message(self, buf: Buffer | None, size: int) -> bytes | Message:
        if type(buf) is BytesBuffer:
            if len(buf) != size:  # a final fragment without payload: not cut to size yet
                buf = self._resized(buf, size, size)
            self._count(buf, 0)
            if buf.charged:  # charged until delivered: fastws.asgi takes it (see _large)
                return Message(buf, size)
            return buf.take()
        return super().message(buf, size)

    def release(self, buf: Buffer | None) -> None:
        if type(buf) is BytesBuffer:
            self._count(buf, 0)
        release(buf)


#: For connections whose owner sets no memory budget (the clients): regions unmapped at
#: release, never a wait for memory. Shared: an assembler holds no per-message state.
UNBOUNDED = RegionAssembler()
