"""Tests for the HTTP/1.1 half of the handshake (fastws.protocol.http11).

The parser and the response builder are also exercised through their re-exports in
test_handshake.py; this module covers what is HTTP's own: the `Headers` mapping, the
generic response, and that the module stands without the RFC 6455 half.
"""

from collections.abc import Mapping

import pytest

from fastws.exceptions import HandshakeError, InvalidHandshake
from fastws.protocol import handshake
from fastws.protocol.http11 import Headers, RequestParser, Response, ResponseParser

FIELDS = [("Set-Cookie", "a=1"), ("Host", "h"), ("set-cookie", "b=2")]


def test_headers_is_a_read_only_case_insensitive_mapping():
    """Issue 18 item 6: dict(headers) works, one entry per name (lowercased, first value)."""
    headers = Headers(FIELDS)
    assert isinstance(headers, Mapping)
    assert dict(headers) == {"set-cookie": "a=1", "host": "h"}
    assert len(headers) == 2
    assert list(headers) == list(headers.keys()) == ["set-cookie", "host"]
    assert list(headers.items()) == [("set-cookie", "a=1"), ("host", "h")]
    assert list(headers.values()) == ["a=1", "h"]
    assert headers["hOsT"] == "h" and headers.get("SET-COOKIE") == "a=1"
    assert "HOST" in headers and "Other" not in headers and 42 not in headers
    with pytest.raises(KeyError):
        headers["missing"]
    with pytest.raises(TypeError):
        headers["Host"] = "evil"  # type: ignore[index]
    assert not hasattr(headers, "__setitem__") and not hasattr(headers, "pop")


def test_repeated_fields_stay_reachable():
    """A repeated field is not lost to the mapping view: get_all and raw keep every value."""
    headers = Headers(FIELDS)
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers.raw == FIELDS
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert headers.get_all("missing") == []
    assert repr(headers) == f"Headers({FIELDS!r})"


def test_headers_equality_ignores_name_case_but_not_order():
    """Two heads with the same fields in the same order are equal whatever the name case."""
    assert Headers(FIELDS) == Headers([("set-cookie", "a=1"), ("HOST", "h"), ("Set-Cookie", "b=2")])
    assert Headers(FIELDS) != Headers([FIELDS[1], FIELDS[0], FIELDS[2]])


def test_compact_keeps_lookups_working():
    """Dropping the index (done once a connection is open) only costs a rebuild."""
    headers = Headers(FIELDS)
    assert headers["host"] == "h"
    headers.compact()
    assert dict(headers) == {"set-cookie": "a=1", "host": "h"}


def test_parsed_request_headers_convert_to_dict():
    """What a handler does with ws.request.headers: dict() of a parsed head."""
    request = RequestParser().feed(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Tag: 1\r\nx-tag: 2\r\n\r\n")
    assert request is not None
    assert dict(request.headers) == {"host": "a", "x-tag": "1"}
    assert request.headers.get_all("X-Tag") == ["1", "2"]


BROWSER_HEAD = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: Upgrade\r\n"
    b"Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)"
    b" AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\nOrigin: http://example.com:8080\r\nSec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: a=1\r\ncookie: b=2\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"X-Spaced:   padded value \t\r\n\r\n"
)


def test_compacted_parsed_headers_answer_exactly_as_before() -> None:
    """What an open connection keeps of its request (compacted: the header section as one
    string) answers every question as the freshly parsed head did: raw fields in order and
    case, repeated fields, lookups, equality, repr."""
    fresh = RequestParser().feed(BROWSER_HEAD)
    kept = RequestParser().feed(BROWSER_HEAD)
    assert fresh is not None and kept is not None
    kept.headers.compact()
    assert kept.headers.raw == fresh.headers.raw
    assert kept.headers.raw[-1] == ("X-Spaced", "padded value")
    assert kept.headers.get_all("cookie") == ["a=1", "b=2"]
    assert dict(kept.headers) == dict(fresh.headers)
    assert kept.headers == fresh.headers and repr(kept.headers) == repr(fresh.headers)
    assert kept.headers.get_tokens("connection") == ["upgrade"]
    assert (kept.method, kept.path, kept.query) == ("GET", "/chat", "room=1")


def test_compacted_request_headers_hold_less_than_half_the_memory() -> None:
    """Issue 21: an idle connection keeps its request for the application; compacted, a
    browser's usual header fields cost under half of the parsed tuples and strings (1,000
    connections' worth, counted by tracemalloc)."""
    import gc
    import tracemalloc

    def held(compact: bool) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            requests = [RequestParser().feed(BROWSER_HEAD) for _ in range(1000)]
            for request in requests:
                assert request is not None
                if compact:
                    request.headers.compact()
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    assert held(compact=True) < held(compact=False) / 2


def test_generic_response_and_accept_response_render_alike():
    """The 101 fast path of the handshake renders the bytes the general serializer would."""
    accept = handshake.accept_response("dGhlIHNhbXBsZSBub25jZQ==", "chat", None, [("Server", "x")])
    general = Response(accept.status, accept.reason, list(accept.headers), accept.body)
    assert type(general) is Response
    assert accept.serialize() == general.serialize()


def test_parse_errors_are_fastws_exceptions() -> None:
    """A malformed request is a HandshakeError carrying its status (the server's answer); a
    malformed response an InvalidHandshake (the client's refusal): fastws.exceptions' own."""
    with pytest.raises(HandshakeError) as info:
        RequestParser().feed(b"POST / HTTP/1.1\r\n")
    assert info.value.status == 405
    with pytest.raises(InvalidHandshake, match="invalid response from server"):
        ResponseParser().feed(b"SSH-2.0\r\n")
    assert handshake.HandshakeError is HandshakeError
