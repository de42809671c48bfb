"""This process's counters: connections, handshakes, messages, bytes, close codes, errors.

The hot path increments a plain list of ints (`values[MESSAGES_IN] += n`): it is the cheapest
thing CPython can increment (about 4x cheaper than an item of a memoryview over shared memory,
measured), and it has one writer, this process. A worker publishes the list into its slot of the
shared scoreboard page with each heartbeat, which is where other processes read it.
"""

from __future__ import annotations

__all__ = ["CLOSE_CODES", "NAMES", "close_index", "values"]

#: Counter names, in slot order; GAUGES go up and down, the others only go up.
NAMES = (
    "connections_open",  # gauge: upgraded connections not yet closed
    "handshakes",  # opening handshakes completed (101 sent)
    "handshakes_refused",  # handshakes answered with an HTTP error instead of 101
    "busy",  # handshakes refused with 503 because of max_connections
    "messages_in",
    "messages_out",
    "bytes_in",  # wire bytes read after the handshake (frame headers included)
    "bytes_out",  # wire bytes of the frames sent after the handshake (headers, control frames)
    "errors",  # handler or process_request exceptions (the client gets 1011 or 500)
    "http_requests",  # plain HTTP requests answered (monitoring, routes, ASGI apps)
    "broadcast_skipped",  # broadcast messages not sent to a slow connection (overflow=skip)
    "broadcast_closed",  # slow connections closed 1008 by a broadcast (overflow=close)
    "published",  # messages published on a channel by this worker
    "publish_failed",  # publishes the broker refused (PublishError)
    "pubsub_lagged",  # times this worker fell behind the channels' ring (subscribers: 1013)
    "keepalive_visits",  # connections the keepalive wheel visited (a ping, or a pong missing)
    "keepalive_visits_late",  # of them, visited more than a tick after due: the loop was behind
    # Budgets, sampled at heartbeat time by server.gauges (never on the message path):
    "max_connections",  # gauge: the configured limit (0: none)
    "message_memory_bytes",  # gauge: held in large-message regions (buffers.Budget)
    "message_memory_limit_bytes",  # gauge: max_message_memory
    "write_buffer_bytes",  # gauge: written by handlers, not yet taken by the kernel
    "connections_writing_paused",  # gauge: peers not reading, over write_limit
    "connections_waiting_for_memory",  # gauge: reading paused for max_message_memory
)
GAUGES = frozenset(
    {
        "connections_open",
        "max_connections",
        "message_memory_bytes",
        "message_memory_limit_bytes",
        "write_buffer_bytes",
        "connections_writing_paused",
        "connections_waiting_for_memory",
    }
)
(
    CONNECTIONS_OPEN,
    HANDSHAKES,
    HANDSHAKES_REFUSED,
    BUSY,
    MESSAGES_IN,
    MESSAGES_OUT,
    BYTES_IN,
    BYTES_OUT,
    ERRORS,
    HTTP_REQUESTS,
    BROADCAST_SKIPPED,
    BROADCAST_CLOSED,
    PUBLISHED,
    PUBLISH_FAILED,
    PUBSUB_LAGGED,
    KEEPALIVE_VISITS,
    KEEPALIVE_VISITS_LATE,
    MAX_CONNECTIONS,
    MESSAGE_MEMORY,
    MESSAGE_MEMORY_LIMIT,
    WRITE_BUFFER,
    WRITING_PAUSED,
    WAITING_FOR_MEMORY,
) = range(len(NAMES))

#: Close codes counted one by one (RFC 6455 7.4.1); any other code is counted as "other".
CLOSE_CODES = (1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011)
CLOSE_FIRST = len(NAMES)
CLOSE_OTHER = CLOSE_FIRST + len(CLOSE_CODES)
SIZE = CLOSE_OTHER + 1

_close_slots = {code: CLOSE_FIRST + i for i, code in enumerate(CLOSE_CODES)}


def close_index(code: int) -> int:
    """Where a connection closed with `code` is counted."""
    return _close_slots.get(code, CLOSE_OTHER)


#: The counters themselves; mutated in place, never rebound (modules hold references to it).
values: list[int] = [0] * SIZE


def reset() -> None:
    """Start from zero (a freshly forked worker must not inherit its parent's counts)."""
    values[:] = [0] * SIZE
