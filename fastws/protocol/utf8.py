"""Incremental, fail-fast UTF-8 decoding of text messages that arrive in pieces.

RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the
byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
Connection_." Failing *fast* means at the first fragment (or socket read) that makes the
stream invalid, not when the message ends.

CPython's incremental UTF-8 decoder already rejects a bad sequence as soon as the bytes that
make it bad are present, with one gap: a truncated surrogate (ED A0..ED BF) at the end of a
piece is held back as "maybe valid". `TextDecoder` closes that gap.
"""

from __future__ import annotations

import codecs

__all__ = ["TextDecoder"]

_IncrementalDecoder = codecs.getincrementaldecoder("utf-8")


class TextDecoder:
    """Decode a text message piece by piece; `decode` raises UnicodeDecodeError on bad input."""

    __slots__ = ("_decoder", "_parts")

    def __init__(self) -> None:
        self._decoder = _IncrementalDecoder("strict")
        self._parts: list[str] = []

    def decode(self, data: bytes | bytearray | memoryview) -> None:
        """Decode one more piece of the message."""
        self._parts.append(self._decoder.decode(data, False))
        pending = self._decoder.getstate()[0]
        # ED followed by A0..BF encodes a UTF-16 surrogate, which UTF-8 forbids (RFC 3629 3).
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise UnicodeDecodeError("utf-8", pending, 0, 2, "surrogates not allowed")

    def finish(self) -> str:
        """The whole message; raises if it ends inside a multi-byte sequence."""
        self._parts.append(self._decoder.decode(b"", True))
        text = "".join(self._parts)
        self._parts.clear()
        return text
