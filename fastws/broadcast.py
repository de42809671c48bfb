"""broadcast(): one message to many connections, framed (and compressed) once.

The frame is built once and the same bytes object (or the same header + payload view, for a
large message) goes into every connection's write batch: no copy per connection, no await
per connection. The batches leave at the end of the loop iteration, one writev per
connection however many messages were broadcast in that iteration (a burst published in one
go costs one system call per subscriber, not one per message and subscriber).

With permessage-deflate, connections that send without context takeover (fastws' default)
share one compressed frame per distinct parameter set (`PerMessageDeflate.broadcast_key`);
only a connection with context takeover (its compressor's window depends on what it sent
before) or a client connection (masked frames) gets a frame of its own.

Slow receivers: a connection whose outgoing buffer holds more than `broadcast_limit` bytes
that the socket did not take (checked only while it is over write_limit, i.e. while the
transport has paused writing) does not get the message. What one loop iteration queues is
not counted: a burst goes out first, and the connection is judged by what it leaves unread. With
`broadcast_overflow="close"` (the default) it is closed with 1008, because a client that
silently missed messages would show a wrong state; with "skip" it only misses this message.
Either way the others are not delayed, and /metrics counts it (broadcast_closed,
broadcast_skipped).

A connection in the middle of sending a fragmented message (`send_fragments`) gets the
broadcast message after its last fragment: RFC 6455 5.4 forbids interleaving the frames of
two messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .payload import as_payload as _as_payload
from .protocol.connection import State
from .protocol.deflate import broadcast_frame
from .protocol.frames import CloseCode, Opcode, encode_header
from .stats.counters import BROADCAST_CLOSED, BROADCAST_SKIPPED, MESSAGES_OUT
from .stats.counters import values as _stats
from .websocket import WebSocket

__all__ = ["DEFAULT_LIMIT", "OVERFLOW_POLICIES", "broadcast", "broadcast_payload"]

logger = logging.getLogger("fastws")

#: Defaults of the broadcast_limit and broadcast_overflow options.
DEFAULT_LIMIT = 1 << 20
OVERFLOW_POLICIES = ("close", "skip")
# Payloads up to this size are joined with their header into one bytes object (as in
# Connection.send_data): one item per message in a connection's writev.
_JOIN_MAX = 4096
_OPEN = State.OPEN


def broadcast(
    connections: Iterable[WebSocket],
    message: str | bytes | bytearray | memoryview | Any,
    *,
    limit: int | None = None,
    overflow: str | None = None,
) -> int:
    """Send `message` (str: text, bytes-like: binary) to every open connection; return to
    how many it went.

    Synchronous: the frames are queued at once and written when the loop iteration ends.
    Binary data is not copied: do not modify it until the next iteration. `limit` and
    `overflow` override the server's broadcast_limit and broadcast_overflow for this call.
    Must run on the connections' event loop.
    """
    opcode, payload = _as_payload(message)
    return broadcast_payload(connections, opcode, payload, limit, overflow)


def broadcast_payload(
    connections: Iterable[WebSocket],
    opcode: int,
    payload: bytes | bytearray | memoryview,
    limit: int | None = None,
    overflow: str | None = None,
) -> int:
    """`broadcast()` of a payload already encoded (the hub's path: no str to encode)."""
    if overflow is not None and overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
    size = len(payload)
    plain: Any = None  # the uncompressed frame: bytes, or (header, payload)
    shared: dict[tuple[int, int, int], Any] = {}  # compressed frames by broadcast_key
    sent = 0
    for ws in connections:
        conn = ws.protocol
        if conn.state is not _OPEN or ws.closed:
            continue
        if ws.writing_paused and _overflowed(ws, limit, overflow):
            continue
        out = ws.outbox
        if out.deferred is not None:  # sending a fragmented message: after its last frame
            out.deferred.append((opcode, payload))
            sent += 1
            continue
        deflate = conn.deflate
        if deflate is None and not conn.client:
            frame = plain
            if frame is None:
                frame = plain = _frame(opcode, payload, size)
        elif deflate is not None and not conn.client and (key := deflate.broadcast_key):
            if size < deflate.min_size:
                frame = plain
                if frame is None:
                    frame = plain = _frame(opcode, payload, size)
            else:
                frame = shared.get(key)
                if frame is None:
                    frame = shared[key] = _compressed(opcode, payload, size, key)
        else:  # context takeover or a client connection: this connection's own frame
            frame = conn.send_data(opcode, payload)
        out.add(frame)
        out.flush_soon()
        sent += 1
    _stats[MESSAGES_OUT] += sent
    return sent


def _frame(opcode: int, payload: bytes | bytearray | memoryview, size: int) -> Any:
    """An unmasked server frame: one bytes object when small, else (header, payload)."""
    header = encode_header(opcode, size)
    if size <= _JOIN_MAX:
        return header + payload
    return header, payload


def _compressed(
    opcode: int, payload: bytes | bytearray | memoryview, size: int, key: tuple[int, int, int]
) -> Any:
    """The compressed frame for every connection with this broadcast_key, or the plain frame
    when compressing does not make it smaller (as Connection.send_data decides)."""
    level, window_bits, memory_level = key
    frame = broadcast_frame(
        opcode, payload, window_bits=window_bits, level=level, memory_level=memory_level
    )
    if len(frame) >= size + len(encode_header(opcode, size)):
        return _frame(opcode, payload, size)
    return frame


def _overflowed(ws: WebSocket, limit: int | None, overflow: str | None) -> bool:
    """Whether `ws` is too far behind to get this message; if so, apply the policy."""
    if limit is None or overflow is None:
        config = getattr(getattr(ws, "server", None), "config", None)
        if limit is None:
            limit = config.broadcast_limit if config is not None else DEFAULT_LIMIT
        if overflow is None:
            overflow = config.broadcast_overflow if config is not None else "close"
    unsent = ws.outbox.in_transport()
    if unsent <= max(limit, ws.write_limit):
        return False
    if overflow == "skip":
        _stats[BROADCAST_SKIPPED] += 1
        return True
    _stats[BROADCAST_CLOSED] += 1
    logger.info(
        "connection from %s: %d bytes not yet sent, too slow for broadcast: closing 1008",
        ws.peer,
        unsent,
    )
    drop_slow(ws)
    return True


def drop_slow(ws: WebSocket) -> None:
    """Close a connection that does not keep up: Close 1008 after what it has not read yet,
    and the TCP connection dropped if it does not read that within close_timeout."""
    ws.fail(CloseCode.POLICY_VIOLATION, "too slow to receive broadcasts")


# Opcodes, for callers that pass payloads (the hub).
TEXT = Opcode.TEXT
BINARY = Opcode.BINARY
