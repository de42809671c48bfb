"""The WebSocket state machine after the opening handshake: bytes in, events out, bytes to send.

No sockets and no event loop: the I/O layer calls `receive_data()` with what it read, then
drains `events` and `data_to_send()`, and asks for frames to write with the `send_*` methods.

The events, in arrival order, are listed in `events`. Parts of the class live in their own
modules: `closing` (the closing handshake, failing the connection) and `compression`
(permessage-deflate on frames); what a message's memory is, the I/O layer decides
(`assembly`).

Receiving is built for two cases. Frames that are complete in the buffer are parsed in one
tight loop and each small payload is unmasked straight into its final `bytes`. A frame whose
payload is still arriving gets a destination sized from its declared length (see `assembly`);
`payload_target()` exposes where the next bytes go, so a `BufferedProtocol` can have the kernel
write them in place, and `payload_written()` unmasks them there. Only an incomplete frame
header (at most 13 bytes) is ever kept between reads.
"""

from __future__ import annotations

import os
from typing import Final

from .accel import speedups
from .assembly import PLAIN, Assembler, Buffer
from .checks import FrameChecks
from .closing import Closing
from .compression import JOIN_MAX as _JOIN_MAX
from .compression import Compression
from .deflate import PerMessageDeflate
from .events import Blocked, Chunk, Close, Event, Failure, Pong, State
from .frames import (
    SMALL_HEADERS,
    CloseCode,
    Opcode,
    ProtocolError,
    encode_header,
    lone_frame,
)
from .mask import NUMPY_MIN, SMALL_MAX, mask_into, rotate, unmask, unmask_inplace
from .utf8 import TextDecoder

__all__ = ["Blocked", "Chunk", "Close", "Connection", "Event", "Failure", "Pong", "State"]

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
DEFAULT_MAX_FRAGMENTS: Final = 100_000
# A frame's remaining payload is offered for direct writes from this size on; below it one
# read into the shared receive buffer also picks up the frames that follow.
DIRECT_MIN: Final = 16 * 1024
# In streaming mode a binary message is delivered in pieces of at most this size.
STREAM_CHUNK: Final = 1 << 20
# A client keeps the buffer it masks large payloads into for the next one up to this size.
MASK_BUFFER_MAX: Final = 16 << 20
# Frames outside the fast path (fragments, control frames) parsed per slice when `slice_frames`
# is on: ~10 us each in CPython, so one slice keeps the event loop ~10 ms.
SLICE_FRAMES: Final = 1024

# A whole fragment of a binary message from this size on is unmasked straight into the
# message's buffer (`_fragment_into`); below it, into bytes that are then appended (cheaper
# for tiny fragments: a bytearray grows in place).
INTO_MIN: Final = 4096

# The states as module constants: an enum member looked up on its class costs ~40 ns in
# CPython 3.11 (no specialisation for class attributes), and the per-read paths check them.
_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED

# The compiled twin when it was built (see accel.py).
_lone_frame = lone_frame if speedups is None else speedups.lone_frame
_c_unmask = None if speedups is None else speedups.unmask
_c_unmask_into = None if speedups is None else speedups.unmask_into
_c_unmask_fragments = None if speedups is None else speedups.unmask_fragments


class Connection(FrameChecks, Closing, Compression):
    """One WebSocket connection's protocol state, server side unless `client=True`."""

    # Slots: past ~30 attributes CPython stops sharing the keys of instance dicts, and each
    # connection's dict alone cost 1.6 KB (10,000 idle connections: 5.9 -> 7.3 KB each).
    __slots__ = (
        "_ctrl",
        "_decoder",
        "_dsize",
        "_fdone",
        "_ffin",
        "_fmask",
        "_fop",
        "_mask_buf",
        "_mbuf",
        "_mdeflate",
        "_mfrags",
        "_mlen",
        "_mop",
        "_msize",
        "_mstream",
        "_remaining",
        "_sdeflate",
        "_tail",
        "assembler",
        "begun",
        "blocked",
        "client",
        "defer_failure",
        "deflate",
        "error",
        "events",
        "failing",
        "mask_buffer_free",
        "max_fragments",
        "max_frame_size",
        "max_message_size",
        "out",
        "slice_frames",
        "state",
        "streaming",
        "target",
    )

    def __init__(
        self,
        *,
        client: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        deflate: PerMessageDeflate | None = None,
        assembler: Assembler | None = None,
    ) -> None:
        self.client = client
        self.max_message_size = max_message_size
        self.max_frame_size = max_message_size if max_frame_size is None else max_frame_size
        self.max_fragments = max_fragments
        self.state = _OPEN
        # RFC 6455 7.1.7 fails the connection when the peer breaks the protocol. With
        # `defer_failure`, our Close frame is not queued at once: `failing` holds its code and
        # reason, data frames may still be sent (answers to the messages that were complete
        # before the violation, delivered before the Failure event), and `close_failed()`
        # queues the Close frame after them. Off: the Close frame is queued at once.
        self.defer_failure = False
        self.failing: tuple[int, str] | None = None
        # An exception of ours (a bug, or no memory) while handling the peer's bytes: the
        # connection failed with 1011 and this says why, for the I/O layer's log line.
        self.error: Exception | None = None
        self.events: list[Event] = []  # drained by the I/O layer
        self.out: list[bytes] = []  # frames the protocol queued itself (pongs, close replies)
        self._tail = b""  # an incomplete frame header
        # The frame whose payload is arriving (_remaining > 0).
        self._remaining = 0
        self._fop = 0  # its opcode (a data frame's CONT is resolved to the message's opcode)
        self._ffin = False
        self._fmask: bytes | None = None
        self._fdone = 0  # payload bytes of this frame received so far (= the mask phase)
        #: The message buffer a binary frame's payload goes to (at _mlen + _fdone), None
        #: between large binary messages: an I/O layer asks `payload_target()` only when set.
        self.target: Buffer | None = None
        self._ctrl = b""  # control payload gathered so far
        # The message being assembled from several frames (_mop != 0).
        self._mop = 0
        self._msize = 0
        self._mfrags = 0
        # Messages (and control frames) that started arriving in pieces: names the one in
        # progress, for the I/O layer's message_timeout (see partial()).
        self.begun = 0
        self._decoder: TextDecoder | None = None
        # A binary message is assembled in one buffer: _mlen bytes of _mbuf are filled.
        self._mbuf: Buffer | None = None
        self._mlen = 0
        # What that buffer is, and whether a new large message may have one now (see
        # assembly): the I/O layer's memory policy. While a new large message waits for
        # memory, `blocked` is set, nothing is parsed, and the I/O layer stops reading until
        # `resume()` admits it.
        self.assembler: Assembler = PLAIN if assembler is None else assembler
        self.blocked: Blocked | None = None
        # Fairness: with `slice_frames` set, parsing stops after that many frames outside the
        # fast path and keeps the rest of the read; `blocked` is SLICE, and the I/O layer calls
        # `resume()` on a later loop iteration. A read of 256 KiB of one-byte
        # fragments is ~37,000 frames, ~0.4 s of parsing that would starve every other
        # connection of the loop. 0: parse everything now (sans-I/O users, tests).
        self.slice_frames = 0
        # Also with slicing on (the I/O layer resumes on a later iteration): a new large
        # message whose size class has a released region still held by the transport that
        # wrote it waits one iteration for it (`blocked` is REGION), instead of mapping a
        # second one: an echo would otherwise hold two messages' memory.
        # Set by the I/O layer before a message starts: deliver the next binary message as
        # Chunk events of up to STREAM_CHUNK bytes as it arrives, instead of assembling it.
        self.streaming = False
        self._mstream = False  # the message being received is streamed
        # permessage-deflate (RFC 7692), when negotiated: see the "compression" section.
        self.deflate = deflate
        self._mdeflate = False  # the message being received is compressed
        self._dsize = 0  # its decompressed size so far
        self._sdeflate = False  # the fragmented message being sent is compressed
        # Client side: large payloads are masked into this buffer (5.3 forces one copy), kept
        # for the next message while it is at most MASK_BUFFER_MAX. The I/O layer sets
        # `mask_buffer_free` when the previous masked payload has been written (the socket
        # took it); otherwise, and for sans-I/O users by default, each message gets a new one.
        self._mask_buf: bytearray | None = None
        self.mask_buffer_free = False

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Consume bytes from the peer. `data` may be reused by the caller afterwards."""
        if self.state is _CLOSED:
            return
        if self.blocked:
            self._tail += data
            return
        try:
            self._receive(data)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
        except Exception as exc:  # ours, not the peer's: 1011, never into the event loop
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        self.error = exc
        self._fail(CloseCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})")

    def _receive(self, data: bytes | bytearray | memoryview) -> None:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        end = len(data)
        pos = 0
        if self._remaining:
            pos = self._consume(data, 0, end)
            if self.state is _CLOSED:
                return
        events = self.events
        from_bytes = int.from_bytes
        c_unmask = _c_unmask
        quota = self.slice_frames or -1  # counts down to 0 only when slicing is on
        # The fast path takes a whole unfragmented message in one complete, masked frame from
        # a client: every check _check_header would make is implied by these conditions.
        fast = not self.client
        fast_limit = min(self.max_frame_size, self.max_message_size)
        while pos < end:
            avail = end - pos
            if avail < 2:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            hlen = 2
            if length == 126:
                if avail < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                hlen = 4
            elif length == 127:
                if avail < 10:
                    break
                length = from_bytes(data[pos + 2 : pos + 10], "big")
                hlen = 10
            mask: bytes | None = None
            if b1 & 0x80:
                if avail < hlen + 4:
                    break
                mask = bytes(data[pos + hlen : pos + hlen + 4])
                hlen += 4
                if (
                    (b0 == 0x81 or b0 == 0x82)
                    and fast
                    and length <= fast_limit
                    and avail - hlen >= length
                    and not self._mop
                ):
                    start = pos + hlen
                    pos = start + length
                    if c_unmask is not None and length < SMALL_MAX:
                        payload = c_unmask(data[start:pos], mask)
                    elif length < NUMPY_MIN:
                        key = from_bytes((mask * ((length >> 2) + 1))[:length], "little")
                        payload = (from_bytes(data[start:pos], "little") ^ key).to_bytes(
                            length, "little"
                        )
                    else:
                        payload = unmask(data[start:pos], mask)
                    events.append(payload if b0 == 0x82 else payload.decode())
                    continue
            opcode = self._check_header(b0, b1, length, mask)
            pos += hlen
            fin = b0 & 0x80
            if end - pos < length:
                self._start_frame(opcode, fin, length, mask, end - pos)
                if self.blocked:
                    self._tail = bytes(data[pos:end])
                    return
                pos = self._consume(data, pos, end)
                continue
            stop = pos + length
            if (
                length >= INTO_MIN
                and opcode != Opcode.TEXT
                and opcode < Opcode.CLOSE
                and (self._mop or not fin)
                and mask is not None
                and self._fragment_into(opcode, fin, data[pos:stop], mask)
            ):
                pos = stop
                quota -= 1
                if not fin and quota and end - pos >= 6 and not data[pos] & 0x7F:
                    pos, quota = self._fragments_into(data, pos, end, quota)
                if not quota and pos < end:
                    self.blocked = Blocked.SLICE
                    break
                continue
            payload = unmask(data[pos:stop], mask) if mask is not None else bytes(data[pos:stop])
            pos = stop
            if fin and not self._mop and opcode <= Opcode.BINARY:
                if self._mdeflate:  # a whole compressed message: one zlib call, no decoder
                    assert self.deflate is not None
                    payload = self.deflate.decompress(payload, self.max_message_size, True)
                events.append(payload if opcode == Opcode.BINARY else payload.decode())
            elif opcode >= Opcode.CLOSE:
                self._control(opcode, payload)
                if self.state is _CLOSED:
                    return
            else:
                self._data(opcode, fin, payload)
            quota -= 1
            if not quota and pos < end:
                self.blocked = Blocked.SLICE
                break
        if pos < end:
            self._tail = bytes(data[pos:end])

    def _start_frame(
        self, opcode: int, fin: int, length: int, mask: bytes | None, present: int = 0
    ) -> None:
        """A frame whose payload is not all here yet: prepare its destination."""
        self._remaining = length
        self._fop = opcode
        self._ffin = bool(fin)
        self._fmask = mask
        self._fdone = 0
        if opcode == Opcode.BINARY:
            first = not self._mop
            if first:
                self._begin_message(opcode)
            if self._mstream:
                if self._mbuf is None or len(self._mbuf) == self._mlen:
                    self._next_chunk(length)
                self.target = self._mbuf
            elif not self._mdeflate:  # compressed payloads stream into the inflater instead
                # Most of the payload still to come: memory only as it arrives (an mmap
                # commits written pages only), so a declared length costs nothing by itself.
                lazy = present < length >> 2
                assembler = self.assembler
                if first:
                    wait = assembler.admit(length, self._ffin, bool(self.slice_frames))
                    if wait is not None:
                        self.blocked = wait  # resume() admits and allocates
                        return
                    self._mbuf = assembler.begin(length, self._ffin, lazy, self.max_message_size)
                else:
                    self._mbuf = assembler.room(
                        self._mbuf, self._mlen, length, lazy, self.max_message_size, self._ffin
                    )
                self.target = self._mbuf
        elif opcode == Opcode.TEXT:
            if not self._mop:
                self._begin_message(opcode)
        else:
            self._ctrl = b""
            if not self._mop:
                self.begun += 1

    def _consume(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        """Take payload bytes of the frame in progress from `data[pos:end]`."""
        n = min(self._remaining, end - pos)
        chunk = data[pos : pos + n]
        if self.target is not None:
            done = 0
            while True:  # more than one pass only when streaming fills a chunk
                target = self.target
                assert target is not None
                k = min(n - done, len(target) - self._mlen)
                view = memoryview(target)[self._mlen : self._mlen + k]
                if self._fmask is not None and _c_unmask_into is not None:  # one pass
                    _c_unmask_into(
                        chunk[done : done + k], rotate(self._fmask, self._fdone + done), view
                    )
                else:
                    view[:] = chunk[done : done + k]
                    if self._fmask is not None:
                        unmask_inplace(view, self._fmask, self._fdone + done)
                self._mlen += k
                done += k
                if done == n:
                    break
                self._next_chunk(self._remaining - done)
                self.target = self._mbuf
        else:
            if self._fmask is not None:
                chunk = unmask(chunk, self._fmask, self._fdone)
            if self._fop >= Opcode.CLOSE:
                self._ctrl += chunk
            elif self._mdeflate:
                self._inflate(chunk, False)
            else:
                assert self._decoder is not None
                self._decoder.decode(chunk)  # fail fast, even inside a frame
        self._advance(n)
        return pos + n

    def receive_one(self, data: memoryview, n: int) -> str | bytes | None:
        """The request/response case in one call, for an I/O layer that hands each message on
        at once: if `data[:n]` is exactly one complete text or binary frame of less than 126
        bytes from a client, and no other frame or message is in progress, return its message
        (`str` or `bytes`, as `receive_data` would queue it). None: nothing was consumed, give
        the bytes to `receive_data()` (which also reports anything wrong with them).
        """
        if (
            self._tail
            or self._remaining
            or self._mop
            or self.client
            or self.blocked
            or self.state is not _OPEN
        ):
            return None
        return _lone_frame(data, n, self.max_message_size, self.max_frame_size)

    def lone_pong(self, data: memoryview, n: int) -> bool:
        """Whether `data[:n]` is exactly one Pong frame from a client (no reserved bits, at
        most 125 bytes of payload), between frames of an open connection. Such a frame changes
        nothing here (a Pong event only carries its payload up), so an I/O layer that needs no
        payload, keepalive's, may take it as it is. False: give the bytes to `receive_data()`.
        """
        return (
            5 < n < 132
            and data[0] == 0x8A
            and data[1] - 0x80 == n - 6  # MASK set (5.1), a 7-bit length, nothing after it
            and not (self._tail or self._remaining or self._mop or self.client or self.blocked)
            and self.state is _OPEN
        )

    def payload_room(self) -> int:
        """How many bytes `payload_target()` would take now (0: it offers none). All of them
        are still to come from the peer: an I/O layer may wait for that many at once."""
        if self.target is None or self._remaining < DIRECT_MIN or self.state is _CLOSED:
            return 0
        return min(self._remaining, len(self.target) - self._mlen)

    def payload_target(self) -> memoryview | None:
        """Where the next payload bytes may be written directly, if that is worth it."""
        if self.target is None or self._remaining < DIRECT_MIN or self.state is _CLOSED:
            return None
        room = min(self._remaining, len(self.target) - self._mlen)
        return memoryview(self.target)[self._mlen : self._mlen + room]

    def payload_written(self, n: int) -> None:
        """`n` bytes were written at `payload_target()`: unmask them where they are."""
        assert self.target is not None and 0 < n <= self._remaining
        try:
            if self._fmask is not None:
                view = memoryview(self.target)[self._mlen : self._mlen + n]
                unmask_inplace(view, self._fmask, self._fdone)
            self._mlen += n
            if self._mlen == len(self.target) and self._remaining > n:  # a full stream chunk
                self._next_chunk(self._remaining - n)
                self.target = self._mbuf
            self._advance(n)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
        except Exception as exc:  # ours, not the peer's: 1011, never into the event loop
            self._internal_error(exc)

    def _advance(self, n: int) -> None:
        self._fdone += n
        self._remaining -= n
        if self._remaining:
            return
        opcode = self._fop
        if opcode >= Opcode.CLOSE:
            self._control(opcode, self._ctrl)
            self._ctrl = b""
        elif opcode == Opcode.BINARY and not self._mdeflate:
            self.target = None
            if self._ffin:
                self._end_message()
        elif self._ffin:
            if self._mdeflate:
                self._inflate(b"", True)
            self._end_message()

    def _begin_message(self, opcode: int) -> None:
        self.begun += 1
        self._mop = opcode
        self._mstream = self.streaming and opcode == Opcode.BINARY and not self._mdeflate
        if self._mstream:
            self.streaming = False  # one message per request: the next is assembled again
        self._mfrags = 1
        self._dsize = 0
        if opcode == Opcode.TEXT:
            self._decoder = TextDecoder()

    def _data(self, opcode: int, fin: int, payload: bytes) -> None:
        """A complete data frame that is part of a fragmented or a compressed message."""
        if not self._mop:
            self._begin_message(opcode)
        if self._mdeflate:
            self._inflate(payload, bool(fin))
        elif opcode == Opcode.TEXT:
            assert self._decoder is not None
            self._decoder.decode(payload)
        else:
            self._append(payload, bool(fin))
        if fin:
            self._end_message()

    def _fragment_into(
        self, opcode: int, fin: int, masked: bytes | bytearray | memoryview, mask: bytes
    ) -> bool:
        """A whole masked fragment of a binary message, unmasked straight into the message's
        buffer in one pass (the C kernel), instead of into new bytes that `_append` then
        copies: a 16 KiB fragment (WebSocket-Node's client) cost an allocation and two passes.
        False (nothing done but beginning the message): `_data` takes it."""
        if _c_unmask_into is None:
            return False
        if not self._mop:
            self._begin_message(opcode)
        if self._mop != Opcode.BINARY or self._mdeflate or self._mstream:
            return False
        n = len(masked)
        buf = self._mbuf = self.assembler.room(
            self._mbuf, self._mlen, n, False, self.max_message_size, bool(fin)
        )
        _c_unmask_into(masked, mask, memoryview(buf)[self._mlen : self._mlen + n])
        self._mlen += n
        if fin:
            self._end_message()
        return True

    def _fragments_into(
        self, data: bytes | bytearray | memoryview, pos: int, end: int, quota: int
    ) -> tuple[int, int]:
        """The message's whole continuation fragments that follow in this read (16 KiB ones
        from WebSocket-Node's client: several per read), unmasked into its buffer by one C
        call instead of a pass of this parser each. Checks _check_header would make hold for
        what it takes (masked continuation frames, reserved bits clear, within the frame,
        message and fragment limits); it stops before anything else, which the parser then
        takes. Returns the new position and slicing quota."""
        frames = self.max_fragments - self._mfrags
        if 0 < quota < frames:
            frames = quota
        room = min(end - pos, self.max_message_size - self._msize)
        if frames <= 0 or room <= 0:
            return pos, quota
        run = _c_unmask_fragments
        assert run is not None  # _fragment_into ran first
        # First count what the run takes, so the buffer grows by exactly that (a message
        # still in a bytearray would otherwise be extended, zero-filled, by the whole read).
        filled = self._mlen
        _, size, frames, last = run(data, pos, end, None, 0, room, self.max_frame_size, frames)
        if not frames:
            return pos, quota
        buf = self._mbuf = self.assembler.room(
            self._mbuf, filled, size, False, self.max_message_size, bool(last)
        )
        pos, mlen, taken, fin = run(
            data, pos, end, buf, filled, filled + size, self.max_frame_size, frames
        )
        self._mlen = mlen
        self._msize += mlen - filled
        self._mfrags += taken
        if fin:
            self._end_message()
        return pos, (quota - taken if quota > 0 else quota)

    def _append(self, payload: bytes | bytearray | memoryview, final: bool = False) -> None:
        """Copy a complete payload piece to the end of the binary message (`final`: its last)."""
        n = len(payload)
        if not n:
            return
        if self._mstream:
            done = 0
            while done < n:
                if self._mbuf is None or len(self._mbuf) == self._mlen:
                    self._next_chunk(n - done)
                assert self._mbuf is not None
                k = min(n - done, len(self._mbuf) - self._mlen)
                self._mbuf[self._mlen : self._mlen + k] = payload[done : done + k]
                self._mlen += k
                done += k
            return
        self._mbuf = self.assembler.append(
            self._mbuf, self._mlen, payload, self.max_message_size, final
        )
        self._mlen += n

    def _next_chunk(self, coming: int) -> None:
        """Streaming: deliver the filled chunk (if any), start one for `coming` more bytes."""
        if self._mbuf is not None and self._mlen:
            self.events.append(Chunk(self.assembler.chunk(self._mbuf, self._mlen), False))
        self._mbuf = self.assembler.piece(min(STREAM_CHUNK, coming))
        self._mlen = 0

    def resume(self) -> bool:
        """Go on after `blocked`: parse the next slice of a read (SLICE), or try again to admit
        the large message waiting for a region or memory; True once no longer blocked for it.

        The I/O layer calls it on a later loop iteration (SLICE, REGION) or when memory was
        freed (MEMORY, Assembler.wait), then goes on reading; the bytes held back are
        parsed now.
        """
        if not self.blocked:
            return True
        if self.blocked is Blocked.SLICE:  # the rest of a read held back for fairness
            self.blocked = None
            self.receive_data(b"")
            return True
        # After one iteration of REGION the region is taken from the cache if it is free by
        # now, else mapped anew: never a second wait for it (at most one for memory).
        wait = self.assembler.admit(self._remaining, self._ffin, False)
        if wait is not None:
            self.blocked = wait
            return False
        self.blocked = None
        self._mbuf = self.assembler.begin(self._remaining, self._ffin, False, self.max_message_size)
        self.target = self._mbuf
        self.receive_data(b"")
        return True

    def _end_message(self) -> None:
        if self._mop == Opcode.TEXT:
            assert self._decoder is not None
            message: Event = self._decoder.finish()
            self._decoder = None
        elif self._mstream:
            buf, size = self._mbuf, self._mlen
            self._mbuf = None
            self._mlen = 0
            self._mstream = False
            message = Chunk(self.assembler.chunk(buf, size), True)
        else:
            buf, size = self._mbuf, self._mlen
            self._mbuf = None
            self._mlen = 0
            message = self.assembler.message(buf, size)
        self._mop = 0
        self._msize = 0
        self._mdeflate = False
        self.events.append(message)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            # 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            # response, unless it already received a Close frame." ... "A Pong frame sent in
            # response to a Ping frame must have identical 'Application data'".
            if self.state is _OPEN:
                self.out.append(self._frame(Opcode.PONG, payload))
        elif opcode == Opcode.PONG:
            # 5.5.3: "A response to an unsolicited Pong frame is not expected."
            self.events.append(Pong(payload))
        else:
            self._close_received(payload)

    @property
    def sliced(self) -> bool:
        """Parsing a read in slices: the rest waits for a later loop iteration."""
        return self.blocked is Blocked.SLICE

    @property
    def region_wait(self) -> bool:
        """A new large message waits one loop iteration for a released region."""
        return self.blocked is Blocked.REGION

    def partial(self) -> int:
        """Which message (or control frame) is partly received: its number, 0 if none.

        A partial frame header alone does not count: it is at most 13 bytes, and a peer
        sending one costs what an idle connection costs.
        """
        if self._mop or self._remaining:
            return self.begun
        return 0

    def partial_size(self) -> int:
        """Payload bytes received so far of the message in progress."""
        return max(0, self._msize - self._remaining) if self._mop else len(self._ctrl)

    def _reset(self) -> None:
        """Drop any partial frame or message: nothing more will be received."""
        self._remaining = 0
        self._tail = b""
        self._decoder = None
        self._ctrl = b""
        self.assembler.release(self._mbuf)
        self._mbuf = None
        self._mstream = False
        self._mlen = 0
        self.target = None
        self.blocked = None
        self._mop = 0
        self._mdeflate = False
        if self.deflate is not None:
            self.deflate.abort()

    # -- sending -----------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Frames the protocol itself produced (pongs, close replies) since the last call."""
        out = self.out
        self.out = []
        return out

    def _frame(
        self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True
    ) -> bytes:
        """One frame as a single bytes object (control frames and small data frames)."""
        if self.client:
            mask = os.urandom(4)
            return encode_header(opcode, len(payload), fin=fin, mask=mask) + unmask(payload, mask)
        return encode_header(opcode, len(payload), fin=fin) + payload

    def send_data(
        self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True
    ) -> bytes | tuple[bytes, bytes | bytearray | memoryview]:
        """Frame a data payload: one bytes object, or (header, payload) to write without a copy.

        `payload` must not change until it has been written. The server's frames are unmasked
        (5.1: "A server MUST NOT mask any frames"), so a large payload goes out as it is.
        """
        if self.state is not _OPEN and self.failing is None:
            raise RuntimeError(f"cannot send data: connection is {self.state.name}")
        n = len(payload)
        if n < 126 and fin and self.deflate is None and not self.client:  # the common case
            return SMALL_HEADERS[opcode][n] + payload
        if self.deflate is not None:
            frame = self._send_compressed(opcode, payload, fin)
            if frame is not None:
                return frame
        if n <= _JOIN_MAX:
            return self._frame(opcode, payload, fin)
        if self.client:  # 5.3: masked, which takes one copy; mask_into makes it the only one
            mask = os.urandom(4)
            masked = self._masking_buffer(n)
            mask_into(payload, mask, masked)
            return encode_header(opcode, n, fin=fin, mask=mask), masked
        return encode_header(opcode, n, fin=fin), payload

    def _masking_buffer(self, n: int) -> bytearray | memoryview:
        """Where a client's large payload of `n` bytes is masked: the kept buffer when the I/O
        layer has said the last one was written, else a new one (kept if small enough)."""
        buf = self._mask_buf
        if buf is not None and self.mask_buffer_free and n <= len(buf):
            self.mask_buffer_free = False  # until the I/O layer says this one was written
            return memoryview(buf)[:n] if n < len(buf) else buf
        buf = bytearray(n)
        if n <= MASK_BUFFER_MAX:
            self._mask_buf = buf
            self.mask_buffer_free = False
        return buf

    def send_ping(self, payload: bytes = b"") -> bytes:
        if len(payload) > 125:
            raise ValueError("ping payload is longer than 125 bytes")
        if self.state is not _OPEN:
            raise RuntimeError(f"cannot ping: connection is {self.state.name}")
        return self._frame(Opcode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        if len(payload) > 125:
            raise ValueError("pong payload is longer than 125 bytes")
        if self.state is not _OPEN:
            raise RuntimeError(f"cannot pong: connection is {self.state.name}")
        return self._frame(Opcode.PONG, payload)
