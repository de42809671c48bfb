"""What `send()` accepts, as an opcode and bytes to frame: one rule for every sender.

`str` is a text message, anything bytes-like (bytes, bytearray, memoryview, numpy arrays,
mmap, array.array, a received `Message`) a binary one, sent without a copy.
"""

from __future__ import annotations

from typing import Any

from .message import Message
from .protocol.frames import Opcode

__all__ = ["as_payload"]


def as_payload(message: Any) -> tuple[int, bytes | bytearray | memoryview]:
    """The opcode and bytes of `message`; TypeError for anything else, ValueError for a
    buffer that is not contiguous (its bytes are not one run of memory to write).

    On every send's path: exact type checks first, in order of how common they are.
    """
    t = type(message)
    if t is str:
        return Opcode.TEXT, message.encode()
    if t is bytes or t is bytearray:
        return Opcode.BINARY, message
    if t is Message:
        buffer = message.buffer
        if type(buffer) is bytes:  # a small received message: the bytes themselves
            return Opcode.BINARY, buffer
        return Opcode.BINARY, message.data
    if isinstance(message, str):  # subclasses
        return Opcode.TEXT, str(message).encode()
    if isinstance(message, Message):
        return Opcode.BINARY, message.data
    try:
        view = memoryview(message)  # memoryview, numpy arrays, mmap, array.array, Message...
    except TypeError:
        raise TypeError(f"cannot send {t.__name__}: expected str or a bytes-like object") from None
    if not view.c_contiguous:
        raise ValueError("cannot send a non-contiguous buffer; copy it first")
    return Opcode.BINARY, view.cast("B") if view.format != "B" or view.ndim != 1 else view
