"""A received binary message, handed to the application without a copy.

A large message was written by the kernel straight into its own memory region and unmasked
there; `Message` exposes that region as a `memoryview` (`.data`) or a numpy array
(`.array()`), both on the same memory. The rules:

- `release()` (or leaving `with message:`) gives the memory back at once; using the message
  afterwards raises `MessageReleased`. Views taken before (`.data`, `.array()`, slices) keep
  the region alive and valid until they are gone themselves: no view ever points at freed
  memory.
- Without `release()`, the region goes when the last reference to it (the message or a view)
  is garbage-collected.
- The data is writable at every size: the application may modify it in place (e.g.
  decode into it, or `message.array()[:] ^= key`). A large message's region is writable as
  received; a small one arrives as `bytes` and is copied into a `bytearray` the first time
  `.data` or `.array()` is asked for, so a handler that only passes messages on (an echo,
  a relay) pays no copy, and code tested on small payloads behaves the same on large ones.
- Sending a message (`ws.send(message)`) writes its memory without a copy; release it after
  `await ws.drain()` if you want the memory back before the garbage collector frees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .buffers import release
from .protocol.accel import speedups

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Message", "MessageReleased"]


class MessageReleased(RuntimeError):
    """The message's memory was released; its data cannot be used any more."""


class _MessageBase:
    """What a message holds: its buffer and size. The pure-Python twin of the compiled
    `_speedups.MessageBase` (one is made for every binary message a handler receives, so
    the compiled one is used where it was built; tests/test_message.py runs on both)."""

    __slots__ = ("_buffer", "_size")

    def __init__(self, buffer: Any, size: int | None = None) -> None:
        self._buffer: Any = buffer
        self._size: int = len(buffer) if size is None else size

    @property
    def buffer(self) -> Any:
        """What holds the payload: `bytes` for a small message, a memory region for a large
        one (None once released). For senders that write it as it is; use `.data` to read."""
        return self._buffer

    @property
    def released(self) -> bool:
        """Whether release() was called."""
        return self._buffer is None

    def release(self) -> None:
        """Give the memory back now (views taken before keep it until they go). Idempotent."""
        buffer, self._buffer = self._buffer, None
        if buffer is not None and type(buffer) is not bytes:  # bytes: nothing to give back
            self._give_back(buffer)

    def _give_back(self, buffer: Any) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._size


if TYPE_CHECKING:
    _Base = _MessageBase
else:
    _Base = _MessageBase if speedups is None else speedups.MessageBase


class Message(_Base):
    """A binary message: `len(message)`, `.data` (memoryview), `.array()`, `bytes(message)`."""

    __slots__ = ()

    @property
    def data(self) -> memoryview:
        """The payload, writable, on the message's own memory (no copy but, for a small
        message, the first time: see the module's docstring)."""
        buffer = self._buffer
        if buffer is None:
            raise MessageReleased("this message was released; its data is gone")
        if type(buffer) is bytes:  # small: made writable once, like every large message
            buffer = self._buffer = bytearray(buffer)
        view = memoryview(buffer)
        return view if len(view) == self._size else view[: self._size]

    def array(self, dtype: Any = "uint8", shape: Any = None) -> np.ndarray:
        """The payload as a numpy array of `dtype` (and `shape`), on the same memory."""
        import numpy as np

        array = np.frombuffer(self.data, dtype=dtype)
        return array if shape is None else array.reshape(shape)

    def tobytes(self) -> bytes:
        """A copy of the payload as bytes (a small message not yet written to: itself)."""
        buffer = self._buffer
        if type(buffer) is bytes:
            return buffer
        return self.data.tobytes()

    def __bytes__(self) -> bytes:
        return self.tobytes()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            other = other.data
        try:
            return self.data == other
        except TypeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable memory

    def _give_back(self, buffer: Any) -> None:
        """release() of a large message: its region goes back to the worker's cache."""
        release(buffer)

    def __enter__(self) -> Message:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._buffer is None else type(self._buffer).__name__
        return f"<Message {self._size} bytes ({state})>"
