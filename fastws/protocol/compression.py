"""permessage-deflate (RFC 7692) as the frames carry it: the part of the protocol core's
`Connection` that applies the RSV1 rules, the limits on compressed sizes, inflates received
messages into the message being assembled and compresses outgoing frames; mixed into that
class (whose slots hold the state). The codec and the negotiation are in `deflate`.

Nothing here runs unless permessage-deflate was negotiated (`Connection.deflate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from .deflate import PerMessageDeflate, compressed_bound
from .frames import Opcode, encode_header
from .mask import unmask
from .utf8 import TextDecoder

__all__ = ["JOIN_MAX", "Compression"]

# Payloads up to this size are joined with their header into one bytes object (one write);
# larger ones go out as (header, payload), without a copy.
JOIN_MAX: Final = 4096


class Compression:
    """Compressed frames in and out; mixed into `Connection`."""

    __slots__ = ()

    # The Connection's attributes this part uses (declared for type checkers).
    client: bool
    deflate: PerMessageDeflate | None
    max_message_size: int
    _mop: int
    _mdeflate: bool
    _dsize: int
    _sdeflate: bool
    _decoder: TextDecoder | None
    _append: Callable[[bytes | bytearray | memoryview], None]

    def _rsv1_allowed(self, b0: int) -> bool:
        """RSV1 alone, on the first frame of a data message, with deflate negotiated."""
        # RFC 7692 6: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
        # frames and non-first fragments of a data message. An endpoint receiving such a
        # frame MUST _Fail the WebSocket Connection_." (A first frame inside a fragmented
        # message is refused by the checks that follow.)
        return (
            self.deflate is not None
            and b0 & 0x70 == 0x40
            and Opcode.TEXT <= b0 & 0x0F <= Opcode.BINARY
        )

    def _compressed_within(self, b0: int, size: int, limit: int) -> bool:
        """A compressed message's wire size may exceed `limit` by DEFLATE's overhead.

        The limits apply to the decompressed size (checked while inflating); on the wire an
        incompressible message of exactly `limit` bytes is a little longer.
        """
        compressed = b0 & 0x40 if b0 & 0x0F else self._mdeflate
        return bool(compressed) and size <= compressed_bound(limit)

    def _inflate(self, data: bytes | bytearray | memoryview, fin: bool) -> None:
        """Compressed payload bytes of the current message, into the message."""
        assert self.deflate is not None
        out = self.deflate.decompress(data, self.max_message_size - self._dsize, fin)
        if not out:
            return
        self._dsize += len(out)
        if self._mop == Opcode.TEXT:
            assert self._decoder is not None
            self._decoder.decode(out)  # fail fast on invalid UTF-8, even mid-message
        else:
            self._append(out)

    def _send_compressed(
        self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool
    ) -> bytes | tuple[bytes, bytes] | None:
        """A compressed frame, or None to send this one uncompressed.

        RFC 7692 allows each message to be compressed or not: messages shorter than
        `min_size` go out as they are. A fragmented message is compressed as a whole (RSV1
        on its first frame only) whatever its first fragment's size.
        """
        assert self.deflate is not None
        n = len(payload)
        if opcode == Opcode.CONT:
            if not self._sdeflate:
                return None
        elif fin and n < self.deflate.min_size:
            return None
        data = self.deflate.compress_fragment(payload, fin)
        if fin and opcode != Opcode.CONT and not self.deflate.send_takeover and len(data) >= n:
            return None  # incompressible: send it as it is, save the peer the inflating
        self._sdeflate = not fin
        rsv1 = opcode != Opcode.CONT
        if self.client:
            mask = os.urandom(4)
            header = encode_header(opcode, len(data), fin=fin, rsv1=rsv1, mask=mask)
            return header + unmask(data, mask)
        header = encode_header(opcode, len(data), fin=fin, rsv1=rsv1)
        if len(data) <= JOIN_MAX:
            return header + data
        return header, data
