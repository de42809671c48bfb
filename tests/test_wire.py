"""Unit tests of the test suite's own raw-socket helper (tests/wire.py).

The raw client is how the integration tests judge fastws, so its encoder/decoder is checked
against the examples of RFC 6455 5.7 and against the `websockets` library's frame code.
"""

from __future__ import annotations

import os

import pytest
from websockets.frames import Frame as WSFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from tests.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    RSV1,
    RSV3,
    accept_key,
    close_payload,
    decode_frame,
    encode_frame,
    mask_payload,
)

KEY = bytes((0x37, 0xFA, 0x21, 0x3D))


def ws_parse(data: bytes, *, mask: bool) -> WSFrame:
    """Parse `data` with websockets' own frame parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WSFrame.parse(reader.read_exact, mask=mask)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("websockets wanted more data")


def test_rfc6455_5_7_unmasked_hello() -> None:
    """RFC 6455 5.7: a single-frame unmasked text message "Hello"."""
    data = bytes((0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))
    assert encode_frame(OP_TEXT, b"Hello", mask=False) == data
    frame, consumed = decode_frame(data)
    assert consumed == len(data)
    assert (frame.fin, frame.opcode, frame.payload, frame.masked) == (
        True,
        OP_TEXT,
        b"Hello",
        False,
    )


def test_rfc6455_5_7_masked_hello() -> None:
    """RFC 6455 5.7: a single-frame masked text message "Hello"."""
    data = bytes((0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58))
    assert encode_frame(OP_TEXT, b"Hello", masking_key=KEY) == data
    frame, _ = decode_frame(data)
    assert frame.payload == b"Hello"
    assert frame.masking_key == KEY


def test_rfc6455_5_7_fragmented_hello() -> None:
    """RFC 6455 5.7: a fragmented unmasked text message "Hel" + "lo"."""
    assert encode_frame(OP_TEXT, b"Hel", fin=False, mask=False) == bytes(
        (0x01, 0x03, 0x48, 0x65, 0x6C)
    )
    assert encode_frame(0, b"lo", mask=False) == bytes((0x80, 0x02, 0x6C, 0x6F))


def test_rfc6455_5_7_ping() -> None:
    """RFC 6455 5.7: unmasked ping "Hello", masked pong "Hello"."""
    assert encode_frame(OP_PING, b"Hello", mask=False) == bytes(
        (0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F)
    )
    assert encode_frame(0xA, b"Hello", masking_key=KEY) == bytes(
        (0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58)
    )


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (256, bytes((0x82, 0x7E, 0x01, 0x00))),
        (65536, bytes((0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0))),
    ],
)
def test_rfc6455_5_7_binary_lengths(size: int, header: bytes) -> None:
    """RFC 6455 5.7: 256 bytes and 64 KiB binary messages in a single unmasked frame."""
    data = encode_frame(OP_BINARY, bytes(size), mask=False)
    assert data == header + bytes(size)


def test_rfc6455_1_3_accept_key() -> None:
    """RFC 6455 1.3: the sample nonce and its Sec-WebSocket-Accept."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537, 1 << 20])
@pytest.mark.parametrize("mask", [False, True])
def test_encode_matches_websockets(size: int, mask: bool) -> None:
    """Our frames parse identically in websockets, and websockets' frames in our decoder."""
    payload = os.urandom(size)
    ours = encode_frame(OP_BINARY, payload, mask=mask)
    parsed = ws_parse(ours, mask=mask)
    assert (parsed.opcode, parsed.fin, parsed.data) == (Opcode.BINARY, True, payload)

    theirs = WSFrame(Opcode.BINARY, payload).serialize(mask=mask)
    frame, consumed = decode_frame(theirs)
    assert consumed == len(theirs)
    assert (frame.payload, frame.masked, frame.minimal_length) == (payload, mask, True)
    if not mask:
        assert ours == theirs


def test_rsv_and_fin_bits() -> None:
    """The RSV field and FIN bit land where RFC 6455 5.2 puts them."""
    data = encode_frame(OP_TEXT, b"x", fin=False, rsv=RSV1 | RSV3, mask=False)
    assert data[0] == 0b0101_0001
    frame, _ = decode_frame(data)
    assert (frame.fin, frame.rsv) == (False, 0b101)


def test_length_override_declares_without_payload() -> None:
    """length_override writes the declared length (2^63-1 here) and sends only the header."""
    data = encode_frame(OP_BINARY, b"", mask=False, length_override=(1 << 63) - 1)
    assert data == bytes((0x82, 0x7F)) + b"\x7f" + b"\xff" * 7
    assert decode_frame(data) is None  # incomplete: the payload never comes


def test_decoder_flags_non_minimal_length() -> None:
    """A 5-byte payload announced with a 16-bit length is reported as non-minimal."""
    frame, _ = decode_frame(bytes((0x82, 0x7E, 0x00, 0x05)) + b"hello")
    assert frame.payload == b"hello"
    assert not frame.minimal_length


def test_decoder_incomplete_input() -> None:
    """Every strict prefix of a frame is incomplete."""
    data = encode_frame(OP_TEXT, b"hello world", masking_key=KEY)
    for i in range(len(data)):
        assert decode_frame(data[:i]) is None
    assert decode_frame(data + b"extra")[1] == len(data)


def test_mask_is_an_involution() -> None:
    payload = os.urandom(1001)
    assert mask_payload(mask_payload(payload, KEY), KEY) == payload


def test_close_payload() -> None:
    """RFC 6455 5.5.1: code in network byte order, then the UTF-8 reason."""
    assert close_payload(1000, "bye") == b"\x03\xe8bye"
    assert close_payload() == b""
    frame = WSFrame(Opcode.CLOSE, close_payload(4999, "é"))
    assert ws_parse(frame.serialize(mask=True), mask=True).data == b"\x13\x87\xc3\xa9"
    assert encode_frame(OP_CLOSE, b"", mask=False) == b"\x88\x00"
