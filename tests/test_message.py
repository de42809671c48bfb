"""fastws.message: what a handler may do with a received binary Message, at every size."""

from __future__ import annotations

import os

import numpy as np
import pytest
from websockets.sync.client import connect

from fastws.message import Message
from tests.conftest import ServerFactory

MiB = 1 << 20


@pytest.mark.parametrize("size", [1, 100, 64 * 1024, MiB - 1, MiB, 3 * MiB])
def test_message_data_is_writable_at_every_size(start_server: ServerFactory, size: int) -> None:
    """Issue 18 item 8: a handler that modifies a message in place works for small messages
    as it does for large ones (they were read-only below 1 MiB, writable from 1 MiB)."""
    server = start_server("tests.server.parity_apps:invert_in_place", workers=0)
    payload = os.urandom(size)
    with connect(server.url, max_size=None, compression=None) as ws:
        ws.send(payload)
        echoed = ws.recv(timeout=10)
    assert echoed == (np.frombuffer(payload, np.uint8) ^ 0xFF).tobytes()


def test_small_message_is_copied_only_when_its_data_is_asked_for() -> None:
    """Passing a small message on (send, bytes(), tobytes()) costs no copy; .data makes it
    writable once, and later views share that memory."""
    payload = b"abc"
    message = Message(payload)
    assert message.tobytes() is payload and bytes(message) == payload
    view = message.data
    assert not view.readonly
    view[0] = ord("x")
    assert message.tobytes() == b"xbc" and message.data.tobytes() == b"xbc"
    assert payload == b"abc"  # the received bytes themselves are never changed
    message.release()
    assert message.released
