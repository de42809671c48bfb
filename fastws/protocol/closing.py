"""The closing handshake and failing the connection (RFC 6455 5.5.1, 7): the part of the
protocol core's `Connection` that ends it, mixed into that class (whose slots hold the state).

Either side may start the closing handshake: `send_close()` (we did: CLOSING until the peer's
Close frame) or the peer's Close frame (echoed, then CLOSED). A peer that breaks the protocol
is failed (7.1.7): our Close frame with the code says why, and a `Failure` event reports it.
The I/O layer reports what it sees itself: `receive_eof()` (TCP closed: 1006), `abort()`.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import Close, Event, Failure, State
from .frames import CloseCode, Opcode, encode_close, parse_close

__all__ = ["Closing"]


class Closing:
    """How a `Connection` ends; mixed into it."""

    __slots__ = ()

    # The Connection's attributes this part uses (declared for type checkers).
    state: State
    defer_failure: bool
    failing: tuple[int, str] | None
    events: list[Event]
    out: list[bytes]
    _frame: Callable[..., bytes]
    _reset: Callable[[], None]

    def _close_received(self, payload: bytes) -> None:
        """The peer's Close frame (its whole payload)."""
        code, reason = parse_close(payload)
        if self.state is State.OPEN:
            # 5.5.1: "If an endpoint receives a Close frame and did not previously send a
            # Close frame, the endpoint MUST send a Close frame in response. (When sending
            # a Close frame in response, the endpoint typically echos the status code it
            # received.)"
            echo = b"" if code == CloseCode.NO_STATUS else code.to_bytes(2, "big")
            self.out.append(self._frame(Opcode.CLOSE, echo))
        self.state = State.CLOSED
        self._reset()
        self.events.append(Close(code, reason))

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection for a reason the I/O layer found (a timeout, say): our Close
        frame with `code` is queued and a `Failure` event reports it, as for a protocol error."""
        if self.state is not State.CLOSED:
            self._fail(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """7.1.7 _Fail the WebSocket Connection_: send a Close frame (if we still may)."""
        if self.state is State.OPEN:
            if self.defer_failure:
                self.failing = (code, reason[:123])
            else:
                self.out.append(self._frame(Opcode.CLOSE, encode_close(code, reason[:123])))
        self.state = State.CLOSED
        self._reset()
        self.events.append(Failure(code, reason))

    def close_failed(self) -> None:
        """With `defer_failure`: queue our Close frame for the failure now, after the data
        frames sent since the Failure event. Nothing can be sent after it."""
        if self.failing is not None:
            code, reason = self.failing
            self.failing = None
            self.out.append(self._frame(Opcode.CLOSE, encode_close(code, reason)))

    def abort(self) -> None:
        """The I/O layer dropped the connection (no closing handshake, or it gave up waiting
        for one): CLOSED, and any partly received message released. No event: the I/O layer
        knows why it dropped it."""
        self.failing = None  # nothing more is sent either
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._reset()

    def receive_eof(self) -> None:
        """The peer closed TCP. Without a closing handshake that is close code 1006."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._reset()
            self.events.append(Close(CloseCode.ABNORMAL, ""))

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Start the closing handshake; the connection waits for the peer's Close frame."""
        payload = encode_close(code, reason)
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot close: connection is {self.state.name}")
        self.state = State.CLOSING
        return self._frame(Opcode.CLOSE, payload)
