"""Frame-level vocabulary of RFC 6455: opcodes, close codes, frame headers, close payloads.

Only what the receive loop and the senders share lives here; the receive loop itself is in
`connection` because it is the hot path and is written inline there.
"""

from __future__ import annotations

import struct
from enum import IntEnum

__all__ = [
    "CloseCode",
    "Opcode",
    "ProtocolError",
    "encode_close",
    "encode_header",
    "is_valid_close_code",
    "lone_frame",
    "parse_close",
]


class Opcode(IntEnum):
    """RFC 6455 5.2 opcodes; 3-7 and 0xB-0xF are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """RFC 6455 7.4.1 status codes, plus the IANA-registered 1012-1014."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "no status code was actually present"
    ABNORMAL = 1006  # never on the wire: "closed abnormally, without a Close frame"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


class ProtocolError(Exception):
    """The peer broke the protocol; `code` is the close code to fail the connection with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Codes an endpoint may put in a Close frame. RFC 6455 7.4.1/7.4.2: 1004 is reserved, 1005,
# 1006 and 1015 "MUST NOT be set as a status code in a Close control frame by an endpoint",
# 0-999 are "not used"; 3000-3999 are registered by libraries, 4000-4999 private use.
_SENDABLE_CODES = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)


def is_valid_close_code(code: int) -> bool:
    """True for a status code that may appear in a Close frame on the wire."""
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


# Pre-rendered two-byte headers of unmasked final frames with 7-bit lengths: the server sends
# mostly small frames, and a table lookup beats struct.pack on the per-message path.
SMALL_HEADERS: dict[int, tuple[bytes, ...]] = {
    op: tuple(bytes((0x80 | op, n)) for n in range(126)) for op in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
}
_PACK16 = struct.Struct("!BBH").pack
_PACK64 = struct.Struct("!BBQ").pack


def encode_header(
    opcode: int, length: int, *, fin: bool = True, rsv1: bool = False, mask: bytes | None = None
) -> bytes:
    """Return the header of a frame carrying `length` payload bytes.

    With `mask` (a client's 4-byte masking key) the MASK bit is set and the key appended; the
    caller masks the payload itself.
    """
    if fin and not rsv1 and mask is None and length < 126:
        return SMALL_HEADERS[opcode][length]
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((b0, mbit | length))
    elif length < 65536:
        header = _PACK16(b0, mbit | 126, length)
    else:
        header = _PACK64(b0, mbit | 127, length)
    return header + mask if mask is not None else header


def lone_frame(
    data: bytes | bytearray | memoryview, n: int, max_message_size: int, max_frame_size: int
) -> bytes | str | None:
    """The payload of `data[:n]` if it is exactly one masked, final text or binary frame with a
    7-bit length within both limits: `bytes` for binary, `str` for valid UTF-8 text. None for
    anything else, which the general parser then takes and judges.

    The request/response case recognised in one step (`Connection.receive_one`). The twin of
    the compiled `_speedups.lone_frame` (see accel.py): same result for every input.
    """
    if n < 6 or n > 131:
        return None
    b0 = data[0]
    length = data[1] - 0x80  # MASK set and a 7-bit length; anything else fails a test below
    if (
        length < 0
        or length > 125
        or n != length + 6
        or (b0 != 0x81 and b0 != 0x82)
        or length > max_message_size
        or length > max_frame_size
    ):
        return None
    # mask._xor_int's int trick, inline: importing mask would load numpy with the vocabulary.
    from_bytes = int.from_bytes
    key = from_bytes((bytes(data[2:6]) * ((length >> 2) + 1))[:length], "little")
    payload = (from_bytes(data[6:n], "little") ^ key).to_bytes(length, "little")
    if b0 == 0x82:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None  # the general parser fails the connection with 1007


def encode_close(code: int | None = None, reason: str = "") -> bytes:
    """Close frame payload: 2-byte code then UTF-8 reason (at most 123 bytes, RFC 6455 5.5)."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = reason.encode("utf-8")
    if len(data) > 123:
        raise ValueError("close reason is longer than 123 bytes")
    return code.to_bytes(2, "big") + data


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a received Close payload; (1005, "") when it has none.

    Raises ProtocolError (1002 bad length or code, 1007 bad UTF-8) as RFC 6455 5.5.1 and 7.4
    require.
    """
    n = len(payload)
    if n == 0:
        return CloseCode.NO_STATUS, ""
    if n == 1:
        # 5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
        # unsigned integer ... representing a status code"
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason
