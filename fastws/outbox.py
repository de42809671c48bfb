"""One connection's outgoing frames, in the order they were made, batched per loop iteration.

Everything a connection writes after its opening handshake passes through its `Outbox`:
data frames from `send()` and `broadcast()`, and the frames the protocol core queued itself
(pongs, Close). Order on the wire is the order of `add()` calls, so nobody has to remember
to write what is batched before writing something directly.

Frames are held here until `flush()`: at once for a lone message, at the end of the loop
iteration (`flush_soon()`, one call for all connections of the loop) when more are coming,
e.g. answers to pipelined messages or a burst of broadcasts: one writev per connection per
iteration instead of one write per message.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .stats import counters as _counters

__all__ = ["Flusher", "Frame", "Outbox", "flusher"]

_stats = _counters.values
_BYTES_OUT = _counters.BYTES_OUT

#: A frame as the protocol core makes it: one bytes object, or (header, payload) for a large
#: payload that is written without a copy.
Frame = bytes | tuple[bytes, Any]


class Flusher:
    """The outboxes of one event loop to flush when the current iteration ends."""

    __slots__ = ("dirty", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Outbox] = []

    def __call__(self) -> None:
        dirty = self.dirty
        self.dirty = []
        for outbox in dirty:
            outbox.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = (
    weakref.WeakKeyDictionary()
)


def flusher(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The loop's Flusher (one per loop, shared by its connections)."""
    found = _flushers.get(loop)
    if found is None:
        found = _flushers[loop] = Flusher(loop)
    return found


class Outbox:
    """Frames waiting to be written to one transport."""

    __slots__ = ("_flusher", "_frames", "_scheduled", "_transport", "counts", "deferred", "size")

    def __init__(
        self, transport: asyncio.WriteTransport, loop_flusher: Flusher, *, counted: bool = True
    ) -> None:
        self._transport: asyncio.WriteTransport | None = transport
        #: Where the bytes written are counted: the process's counters (/metrics bytes_out),
        #: or a scratch copy for a connection that is not traffic (a dashboard viewer).
        self.counts = _stats if counted else [0] * len(_stats)
        self._flusher = loop_flusher
        self._frames: list[Any] = []
        self._scheduled = False
        #: Bytes held here, not yet handed to the transport.
        self.size = 0
        #: While the connection sends a fragmented message: the broadcast messages that came
        #: meanwhile, as (opcode, payload), sent after its last frame (RFC 6455 5.4: the
        #: fragments of two messages must not interleave). None otherwise.
        self.deferred: list[tuple[int, Any]] | None = None

    def add(self, frame: Any) -> None:  # a Frame
        """Queue a frame behind everything queued before; counted in bytes_out."""
        frames = self._frames
        if type(frame) is bytes:
            frames.append(frame)
            n = len(frame)
        else:
            header, payload = frame
            frames.append(header)
            frames.append(payload)
            n = len(header) + len(payload)
        self.size += n
        self.counts[_BYTES_OUT] += n

    def write(self, frame: Any) -> None:  # a Frame
        """Queue a frame and write everything queued now."""
        transport = self._transport
        if self._frames or transport is None:
            self.add(frame)
            self.flush()
        elif type(frame) is bytes:
            self.counts[_BYTES_OUT] += len(frame)
            transport.write(frame)
        else:
            self.counts[_BYTES_OUT] += len(frame[0]) + len(frame[1])
            transport.writelines(frame)

    def flush(self) -> None:
        """Hand every queued frame to the transport, in one write or writev."""
        self._scheduled = False
        frames = self._frames
        if not frames:
            return
        self._frames = []
        self.size = 0
        transport = self._transport
        if transport is not None:
            if len(frames) == 1:
                transport.write(frames[0])
            else:
                transport.writelines(frames)

    def flush_soon(self) -> None:
        """Flush when the current loop iteration ends (once, however often it is asked)."""
        if not self._scheduled:
            self._scheduled = True
            found = self._flusher
            if not found.dirty:
                found.loop.call_soon(found)
            found.dirty.append(self)

    @property
    def queued(self) -> list[Any]:
        """The frames' parts queued here, in order (a copy)."""
        return list(self._frames)

    @property
    def empty(self) -> bool:
        """Nothing queued here and nothing in the transport's buffer: all was handed to the
        kernel (a client may then reuse the buffer it masked the last payload into)."""
        transport = self._transport
        return not self._frames and (transport is None or not transport.get_write_buffer_size())

    def in_transport(self) -> int:
        """Bytes handed to the transport that the socket has not taken yet."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def detach(self) -> None:
        """The transport is gone: drop what is queued, write nothing more."""
        self._transport = None
        self._frames = []
        self.size = 0
