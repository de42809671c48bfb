"""Frame headers and close payloads as RFC 6455 5.2 and 7.4 define them."""

import struct

import pytest

from fastws.protocol.frames import (
    CloseCode,
    ProtocolError,
    encode_close,
    encode_header,
    is_valid_close_code,
    parse_close,
)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f" + struct.pack("!Q", 65536)),
        (2**63 - 1, b"\x82\x7f" + struct.pack("!Q", 2**63 - 1)),
    ],
)
def test_length_encodings_use_the_minimal_form(length: int, expected: bytes) -> None:
    """5.2: 7-bit, then 16-bit, then 64-bit lengths; "the minimal number of bytes MUST be used"."""
    assert encode_header(0x2, length) == expected


def test_flags_and_mask() -> None:
    header = encode_header(0x1, 5, fin=False, rsv1=True, mask=b"\x37\xfa\x21\x3d")
    assert header == b"\x41\x85\x37\xfa\x21\x3d"


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(encode_close(code, "é")) == (code, "é")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000])
def test_invalid_close_codes_are_protocol_errors(code: int) -> None:
    """7.4: 1005/1006/1015 are never sent on the wire; 0-999 and 1016-2999 are not in use."""
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ValueError):
        encode_close(code)


def test_close_payload_edge_cases() -> None:
    assert parse_close(b"") == (CloseCode.NO_STATUS, "")
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")  # 5.5.1: a body starts with a 2-byte code
    assert info.value.code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.code == CloseCode.INVALID_DATA
    with pytest.raises(ValueError):
        encode_close(1000, "x" * 124)  # 5.5: control payloads are at most 125 bytes
    assert encode_close(None) == b""
