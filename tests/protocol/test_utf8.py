"""Text decoding across pieces: valid text survives any split; invalid text fails fast."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastws.protocol.utf8 import TextDecoder


@given(st.text(), st.lists(st.integers(0, 64)))
def test_any_split_decodes_to_the_same_text(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    decoder = TextDecoder()
    for start, stop in itertools.pairwise(points):
        decoder.decode(data[start:stop])
    assert decoder.finish() == text


@pytest.mark.parametrize(
    "piece",
    [
        b"\xf4\x90",  # above U+10FFFF (Autobahn 6.4.x)
        b"\xed\xa0",  # a UTF-16 surrogate, which Python's incremental decoder would hold back
        b"\xc0",  # overlong
        b"\xe0\x80",  # overlong
        b"\xff",
        b"\x80",  # lone continuation byte
    ],
)
def test_invalid_prefix_fails_before_the_message_ends(piece: bytes) -> None:
    """RFC 6455 8.1 fail fast: the piece that makes the stream invalid raises at once."""
    decoder = TextDecoder()
    decoder.decode(b"valid \xce\xba")
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(piece)


def test_truncated_sequence_fails_at_the_end() -> None:
    """A message that stops inside a multi-byte character is invalid."""
    decoder = TextDecoder()
    decoder.decode(b"ab\xce")
    with pytest.raises(UnicodeDecodeError):
        decoder.finish()
