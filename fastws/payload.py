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
    buffer that is not contiguous (its bytes are not one run of memory to write)."""
    if isinstance(message, str):
        return Opcode.TEXT, message.encode()
    if isinstance(message, bytes | bytearray):
        return Opcode.BINARY, message
    if isinstance(message, Message):
        return Opcode.BINARY, message.data
    try:
        view = memoryview(message)
    except TypeError:
        raise TypeError(
            f"cannot send {type(message).__name__}: expected str or a bytes-like object"
        ) from None
    if not view.c_contiguous:
        raise ValueError("cannot send a non-contiguous buffer; copy it first")
    return Opcode.BINARY, view.cast("B") if view.format != "B" or view.ndim != 1 else view
