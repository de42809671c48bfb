"""fastws.payload.as_payload: what send() accepts and the frame type it becomes."""

from __future__ import annotations

import array

import numpy as np
import pytest

from fastws.message import Message
from fastws.payload import as_payload
from fastws.protocol.frames import Opcode


def test_text_and_binary() -> None:
    """str is a text message (UTF-8), bytes and bytearray binary, passed on as they are."""
    assert as_payload("h\u00e9") == (Opcode.TEXT, "h\u00e9".encode())
    data = bytearray(b"\x00\x01")
    opcode, payload = as_payload(data)
    assert opcode == Opcode.BINARY and payload is data


def test_buffers_without_copy() -> None:
    """numpy arrays, array.array and Message go out as byte views of their own memory."""
    values = np.arange(4, dtype=np.uint32)
    opcode, payload = as_payload(values)
    assert opcode == Opcode.BINARY and isinstance(payload, memoryview)
    assert payload.format == "B" and bytes(payload) == values.tobytes()
    values[0] = 7
    assert payload[0] == 7  # a view, not a copy
    assert bytes(as_payload(array.array("h", [1, 2]))[1]) == array.array("h", [1, 2]).tobytes()
    assert bytes(as_payload(Message(bytearray(b"abc")))[1]) == b"abc"


def test_refused() -> None:
    """Anything else is a TypeError naming its type; a strided view a ValueError (its bytes
    are not one run of memory)."""
    with pytest.raises(TypeError, match="cannot send int"):
        as_payload(3)
    with pytest.raises(ValueError, match="non-contiguous"):
        as_payload(np.arange(10, dtype=np.uint8)[::2])
