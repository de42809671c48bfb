"""Which frames a peer may send: RFC 6455's rules for a frame header (reserved bits, masking,
lengths, opcodes, fragmentation) and the configured limits, checked on the header, before any
payload byte is buffered. The part of the protocol core's `Connection` that the general
(slow) path of its parser calls for each frame, mixed into that class (whose slots hold the
state); the fast path for whole small messages implies these checks by its conditions.
"""

from __future__ import annotations

from collections.abc import Callable

from .frames import CloseCode, Opcode, ProtocolError

__all__ = ["FrameChecks"]


class FrameChecks:
    """Frame header validation; mixed into `Connection`."""

    __slots__ = ()

    # The Connection's attributes this part uses (declared for type checkers).
    client: bool
    max_frame_size: int
    max_message_size: int
    max_fragments: int
    _mop: int
    _mfrags: int
    _msize: int
    _mdeflate: bool
    _rsv1_allowed: Callable[[int], bool]  # compression
    _compressed_within: Callable[[int, int, int], bool]  # compression

    def _check_header(self, b0: int, b1: int, length: int, mask: bytes | None) -> int:
        """Validate a frame header; return the opcode of the message it belongs to."""
        opcode = b0 & 0x0F
        if b0 & 0x70 and not self._rsv1_allowed(b0):
            # 5.2: "MUST be 0 unless an extension is negotiated that defines meanings for
            # non-zero values. If a nonzero value is received and none of the negotiated
            # extensions defines the meaning of such a nonzero value, the receiving endpoint
            # MUST _Fail the WebSocket Connection_."
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
        if (mask is None) is not self.client:
            # 5.1: "The server MUST close the connection upon receiving a frame that is not
            # masked" / "A client MUST close a connection if it detects a masked frame."
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR,
                "masked frame from server" if self.client else "unmasked frame from client",
            )
        if length >> 63:
            # 5.2: "the most significant bit MUST be 0"
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "invalid payload length")
        if opcode >= Opcode.CLOSE:
            if opcode > Opcode.PONG:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            # 5.5: "All control frames MUST have a payload length of 125 bytes or less and
            # MUST NOT be fragmented."
            if length > 125:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "control frame too long")
            if not b0 & 0x80:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            return opcode
        if length > self.max_frame_size and not self._compressed_within(
            b0, length, self.max_frame_size
        ):
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG, f"frame of {length} bytes exceeds the frame limit"
            )
        if opcode == Opcode.CONT:
            if not self._mop:
                # 5.4: fragments are "a single frame with the FIN bit clear and an opcode
                # other than 0, followed by zero or more frames with the FIN bit clear and
                # the opcode set to 0".
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation without a message")
            self._mfrags += 1
            if self._mfrags > self.max_fragments:
                raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
            opcode = self._mop
        elif opcode > Opcode.BINARY:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        elif self._mop:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
        else:
            self._msize = 0
            self._mdeflate = bool(b0 & 0x40)
        if self._msize + length > self.max_message_size and not self._compressed_within(
            b0, self._msize + length, self.max_message_size
        ):
            # Checked against the declared length, before any payload byte is buffered.
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"message of {self._msize + length}+ bytes exceeds the message limit",
            )
        self._msize += length
        return opcode
