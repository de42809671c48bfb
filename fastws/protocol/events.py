"""What the protocol core reports to the I/O layer: connection states, events, and why it
holds bytes back. Small classes with slots; the common messages are no class at all.

Events (`Connection.events`), in arrival order:
- a complete text message as `str`, a complete binary message as `bytes` (the common case
  costs no wrapper object) or, when it was assembled, what the assembler delivers (a `Body`:
  the I/O layer's zero-copy `fastws.message.Message`);
- `Chunk(data, last)`: a piece of a binary message, when the I/O layer asked for streaming;
- `Pong(payload)` for a pong from the peer (pings are answered by the core, automatically);
- `Close(code, reason)` when the peer's Close frame arrived (and, if the peer started the
  closing handshake, our echo is queued in `data_to_send()`);
- `Failure(code, reason)` when the peer broke the protocol: our Close frame with that code is
  queued and the connection is CLOSED; RFC 6455 7.1.7 says the TCP connection is to be closed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

__all__ = ["Blocked", "Body", "Chunk", "Close", "Event", "Failure", "Pong", "State"]


class State(IntEnum):
    OPEN = 1
    CLOSING = 2  # we sent a Close frame and wait for the peer's
    CLOSED = 3  # the closing handshake is over (or the connection failed)


class Blocked(IntEnum):
    """Why the core holds bytes back (`Connection.blocked`, None when it does not) and how
    the I/O layer goes on: it stops reading, then calls `resume()`."""

    SLICE = 1  # the rest of a read of many frames: resume on a later loop iteration (fairness)
    REGION = 2  # a new large message waits one iteration for a region the transport holds
    MEMORY = 3  # a new large message waits for the message memory (Assembler.wait)


class Body(Protocol):
    """A binary message (or streamed piece) as an assembler delivers it: `bytes`, or its own
    zero-copy type (fastws.message.Message). The core only hands it on."""

    def __len__(self) -> int: ...

    def __bytes__(self) -> bytes: ...


class Pong:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Pong({self.payload!r})"


class Close:
    """The peer's Close frame: its code (1005 if it had none) and reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


class Failure(Close):
    """We failed the connection with this code because the peer broke the protocol."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Failure({self.code}, {self.reason!r})"


class Chunk:
    """A piece of a binary message received in streaming mode; `last` ends the message."""

    __slots__ = ("data", "last")

    def __init__(self, data: Body, last: bool) -> None:
        self.data = data
        self.last = last

    def __repr__(self) -> str:
        return f"Chunk({len(self.data)} bytes{', last' if self.last else ''})"


Event = str | bytes | Body | Chunk | Pong | Close
