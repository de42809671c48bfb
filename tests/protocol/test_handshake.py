"""Tests for the sans-I/O opening handshake (fastws.protocol.handshake)."""

import base64
import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.protocol.handshake import (
    ClientResponse,
    HandshakeError,
    Headers,
    InvalidHandshake,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    accept_key,
    accept_response,
    check_origin,
    check_response,
    check_upgrade,
    client_request,
    error_response,
    format_extension,
    generate_key,
    negotiate_subprotocol,
    parse_extensions,
    parse_header_list,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# What Chromium sends, header order and case included, plus one lowercased name.
CHROMIUM = (
    b"GET /chat?room=1&x=%20 HTTP/1.1\r\n"
    b"Host: localhost:8765\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://localhost:8000\r\n"
    b"sec-websocket-version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)

MINIMAL_HEADERS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def head(*header_lines: str, request_line: str = "GET / HTTP/1.1") -> bytes:
    return ("\r\n".join([request_line, *header_lines]) + "\r\n\r\n").encode("latin-1")


def make_request(headers: list[tuple[str, str]], target: str = "/") -> Request:
    path, _, query = target.partition("?")
    return Request("GET", target, path, query, "HTTP/1.1", Headers(headers))


def without(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in MINIMAL_HEADERS if n.lower() != name.lower()]


def replacing(name: str, *values: str) -> list[tuple[str, str]]:
    return without(name) + [(name, v) for v in values]


def parse(data: bytes, **limits: int) -> Request:
    request = RequestParser(**limits).feed(data)
    assert request is not None
    return request


def parse_error(data: bytes, **limits: int) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        parser = RequestParser(**limits)
        assert parser.feed(data) is None, "head should have been refused"
    return info.value


# ---------------------------------------------------------------------------
# Parsing a valid opening handshake


def test_chromium_request_parses_and_validates():
    """A real browser handshake (extra headers, mixed case) is accepted as is."""
    parser = RequestParser()
    request = parser.feed(CHROMIUM)
    assert request is not None
    assert (request.method, request.target, request.version) == (
        "GET",
        "/chat?room=1&x=%20",
        "HTTP/1.1",
    )
    assert (request.path, request.query) == ("/chat", "room=1&x=%20")
    assert request.host == "localhost:8765"
    assert request.origin == "http://localhost:8000"
    assert request.key == KEY
    assert request.headers["SEC-WEBSOCKET-VERSION"] == "13"
    assert request.headers.get("user-agent", "").startswith("Mozilla/5.0 (X11")
    assert len(request.headers) == 12
    assert parser.leftover == b""
    assert check_upgrade(request) == KEY
    assert parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions")) == [
        ("permessage-deflate", [("client_max_window_bits", None)])
    ]


def test_accept_key_matches_rfc6455_example():
    """RFC 6455 1.3: the example key hashes to the documented accept value."""
    assert accept_key(KEY) == ACCEPT


def test_accept_response_renders_exact_101():
    """The 101 carries exactly the RFC 6455 4.2.2 fields, no Content-Length."""
    assert accept_response(KEY).serialize() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


def test_accept_response_optional_fields_and_extra_headers():
    """Subprotocol, extensions and caller headers follow the mandatory fields."""
    response = accept_response(
        KEY, subprotocol="chat", extensions="permessage-deflate", headers=[("Server", "fastws")]
    )
    assert response.status == 101
    assert response.headers[2:] == [
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Server", "fastws"),
    ]
    assert response.serialize().endswith(b"Server: fastws\r\n\r\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subprotocol": ""},
        {"subprotocol": "a b"},
        {"headers": [("Sec-WebSocket-Accept", "x")]},
        {"headers": [("connection", "close")]},
    ],
)
def test_accept_response_refuses_invalid_or_duplicated_fields(kwargs):
    """An empty subprotocol is illegal (4.2.2); reserved fields cannot be doubled."""
    with pytest.raises(ValueError):
        accept_response(KEY, **kwargs)


def test_lf_only_line_endings_are_accepted():
    """RFC 7230 3.5: a recipient MAY accept a bare LF as line terminator."""
    data = b"GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n"
    data += b"Sec-WebSocket-Key: " + KEY.encode() + b"\nSec-WebSocket-Version: 13\n\n"
    request = parse(data)
    assert check_upgrade(request) == KEY
    mixed = data.replace(b"Host: a\n", b"Host: a\r\n").replace(b"13\n\n", b"13\n\r\n")
    assert parse(mixed).headers == request.headers


def test_header_values_are_stripped_and_latin1_decoded():
    """OWS around values is not part of the value; obs-text decodes as latin-1."""
    request = parse(b"GET / HTTP/1.1\r\nX-A: \t spaced \t\r\nX-B:\r\nX-C: caf\xe9\r\n\r\n")
    assert request.headers.raw == [("X-A", "spaced"), ("X-B", ""), ("X-C", "caf\xe9")]


def test_absolute_form_target_yields_resource_name():
    """RFC 6455 4.2.1 allows an absolute http(s) URI containing the resource name."""
    request = parse(head("Host: a", request_line="GET http://a:80/chat?x=1 HTTP/1.1"))
    assert (request.target, request.path, request.query) == ("http://a:80/chat?x=1", "/chat", "x=1")
    request = parse(head("Host: a", request_line="GET wss://a?x HTTP/1.1"))
    assert (request.path, request.query) == ("/", "x")


def test_request_without_headers_parses_then_fails_upgrade():
    """An empty header section is valid HTTP; the upgrade check refuses it."""
    request = parse(b"GET / HTTP/1.1\r\n\r\n")
    assert len(request.headers) == 0
    with pytest.raises(HandshakeError) as info:
        check_upgrade(request)
    assert info.value.status == 400


# ---------------------------------------------------------------------------
# Incremental feeding


def test_byte_by_byte_feeding_gives_same_result_as_one_feed():
    """Split points never change the outcome, leftover included."""
    data = CHROMIUM + b"\x81\x85frame"
    whole = RequestParser()
    expected = whole.feed(data)
    parser = RequestParser()
    results = [parser.feed(data[i : i + 1]) for i in range(len(CHROMIUM))]
    assert results[:-1] == [None] * (len(CHROMIUM) - 1)
    assert results[-1] == expected
    assert parser.leftover == b""
    assert whole.leftover == b"\x81\x85frame"


def test_leftover_keeps_bytes_sent_after_the_head():
    """A client may pipeline frames right after its handshake: none may be lost."""
    parser = RequestParser()
    assert parser.feed(CHROMIUM[:100]) is None
    assert parser.feed(memoryview(CHROMIUM[100:] + b"\x81\x80abcd" + b"\x00" * 70000)) is not None
    assert parser.leftover == b"\x81\x80abcd" + b"\x00" * 70000


def test_feed_accepts_bytearray_and_memoryview():
    """feed() takes any bytes-like chunk the transport hands over."""
    assert RequestParser().feed(bytearray(CHROMIUM)) == RequestParser().feed(memoryview(CHROMIUM))


def test_feed_after_completion_is_a_programming_error():
    """Bytes after the head belong to the frame layer, not to the parser."""
    parser = RequestParser()
    parser.feed(CHROMIUM)
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


# ---------------------------------------------------------------------------
# Malformed requests


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (head("Host: a", request_line="GET / HTTP/1.0"), 400, "HTTP/1.1 required"),
        (head("Host: a", request_line="GET / HTTP/2"), 400, "HTTP/1.1 required"),
        (head("Host: a", request_line="GET / HTTP/2.0"), 400, "HTTP/1.1 required"),
        (head("Host: a", request_line="GET / HTTP/1.2"), 400, "HTTP/1.1 required"),
        (head("Host: a", request_line="GET / http/1.1"), 400, "malformed request line"),
        (head("Host: a", request_line="GET / FTP/1.1"), 400, "malformed request line"),
        (head("Host: a", request_line="POST / HTTP/1.1"), 405, "GET"),
        (head("Host: a", request_line="get / HTTP/1.1"), 405, "GET"),
        (head("Host: a", request_line="G(T / HTTP/1.1"), 400, "malformed request line"),
        (head("Host: a", request_line="GET  / HTTP/1.1"), 400, "malformed request line"),
        (head("Host: a", request_line="GET / HTTP/1.1 "), 400, "malformed request line"),
        (head("Host: a", request_line="GET /"), 400, "malformed request line"),
        (head("Host: a", request_line=""), 400, "malformed request line"),
        (head("Host: a", request_line="GET /caf\xe9 HTTP/1.1"), 400, "malformed request line"),
        (head("Host: a", request_line="GET chat HTTP/1.1"), 400, "malformed request target"),
        (head("Host: a", request_line="GET * HTTP/1.1"), 400, "malformed request target"),
        (head("Host: a", request_line="GET /a#frag HTTP/1.1"), 400, "malformed request target"),
        (head("Host: a", request_line="GET /a\x7f HTTP/1.1"), 400, "malformed request target"),
        (head("Host: a", "No colon here"), 400, "malformed header line"),
        (head("Host : a"), 400, "whitespace before colon"),
        (head("Host\t: a"), 400, "whitespace before colon"),
        (head("Host: a", "X-Long: one", " two"), 400, "folded"),
        (head("\tHost: a"), 400, "folded"),
        (head(": empty name"), 400, "invalid header name"),
        (head("Ho(st: a"), 400, "invalid header name"),
        (head("H\xe9: a"), 400, "invalid header name"),
        (head("X-Nul: a\x00b"), 400, "invalid character in header value"),
        (head("X-Cr: a\rb"), 400, "invalid character in header value"),
        (head("X-Cr: ab\r"), 400, "invalid character in header value"),
        (head("X-Ctl: a\x1bb"), 400, "invalid character in header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400, "invalid character in header value"),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "malformed request line"),
    ],
)
def test_malformed_request_is_refused_with_its_status(data, status, reason):
    """Each grammar violation maps to a precise status and a short reason."""
    error = parse_error(data)
    assert error.status == status
    assert reason in error.reason
    if status == 405:
        assert ("Allow", "GET") in error.headers


def test_binary_garbage_is_refused_on_its_first_byte():
    """A TLS ClientHello on the plain port fails at once, not after a timeout."""
    parser = RequestParser()
    with pytest.raises(HandshakeError) as info:
        parser.feed(b"\x16\x03\x01\x02\x00")
    assert info.value.status == 400


def test_bad_method_is_refused_before_headers_arrive():
    """The request line is judged as soon as it is complete."""
    parser = RequestParser()
    with pytest.raises(HandshakeError) as info:
        parser.feed(b"POST /upload HTTP/1.1\r\nHost: a\r\n")
    assert info.value.status == 405


# ---------------------------------------------------------------------------
# Limits


def test_request_line_at_limit_is_accepted_and_over_limit_gets_414():
    """max_request_line counts the request line without its line end."""
    line = "GET /" + "a" * 90 + " HTTP/1.1"
    assert len(line) == 104
    assert parse(head("Host: a", request_line=line), max_request_line=104).path.startswith("/a")
    assert parse_error(head("Host: a", request_line=line), max_request_line=103).status == 414


def test_endless_request_line_gets_414_at_the_limit():
    """A request line never terminated is refused once it exceeds the limit."""
    parser = RequestParser(max_request_line=100)
    assert parser.feed(b"GET /" + b"a" * 95) is None  # exactly 100 bytes so far
    assert parser.feed(b"\r") is None  # may be the start of the line end
    with pytest.raises(HandshakeError) as info:
        parser.feed(b"a")
    assert info.value.status == 414


def test_header_count_at_limit_is_accepted_and_over_limit_gets_431():
    """max_headers bounds the number of header fields."""
    fields = [f"X-{i}: {i}" for i in range(10)]
    assert len(parse(head(*fields), max_headers=10).headers) == 10
    error = parse_error(head(*fields, "X-11: 11"), max_headers=10)
    assert (error.status, error.reason) == (431, "too many header fields")


def test_head_over_max_header_size_gets_431():
    """The whole head, request line to blank line, must fit in max_header_size."""
    data = head("Host: a", "X-Pad: " + "p" * 200)
    assert parse(data, max_header_size=len(data)) is not None
    error = parse_error(data, max_header_size=len(data) - 1)
    assert error.status == 431


def test_limit_counts_only_the_head_not_the_frames_after_it():
    """A small head followed by a large first frame in the same read is fine."""
    parser = RequestParser(max_header_size=1024)
    assert parser.feed(CHROMIUM + b"\x82\x7f" + b"\x00" * 100_000) is not None
    assert len(parser.leftover) == 100_002


def test_one_mebibyte_header_line_fails_at_max_header_size():
    """A giant header is refused once the limit is crossed, not buffered whole."""
    parser = RequestParser(max_header_size=16384)
    fed = parser.feed(b"GET / HTTP/1.1\r\nX-Big: ")
    assert fed is None
    chunk = b"x" * 1024
    total = 0
    with pytest.raises(HandshakeError) as info:
        for _ in range(1024):  # 1 MiB
            parser.feed(chunk)
            total += len(chunk)
    assert info.value.status == 431
    assert total <= 16384


@pytest.mark.parametrize(
    "line", [b"X: " + b" " * 200_000 + b"\x00", b"X:" + b"\t" * 200_000 + b"\r"]
)
def test_pathological_header_line_is_refused_in_linear_time(line):
    """Long runs of blanks must not make the header regex backtrack quadratically."""
    started = time.perf_counter()
    error = parse_error(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n", max_header_size=1 << 20)
    assert error.status == 400
    assert time.perf_counter() - started < 1.0


def test_many_small_feeds_do_not_rescan_the_buffer():
    """Byte-at-a-time input up to the size limit stays linear (finishes quickly)."""
    parser = RequestParser(max_header_size=1 << 20, max_headers=100_000)
    parser.feed(b"GET / HTTP/1.1\r\n")
    line = b"X-A: b\r\n"
    for _ in range(5000):
        for i in range(len(line)):
            assert parser.feed(line[i : i + 1]) is None
    assert parser.feed(b"\r\n") is not None


# ---------------------------------------------------------------------------
# Upgrade validation (RFC 6455 4.2.1)


def test_minimal_valid_request_returns_key():
    """The five mandatory fields are enough."""
    assert check_upgrade(make_request(MINIMAL_HEADERS)) == KEY


@pytest.mark.parametrize(
    "connection",
    ["keep-alive, Upgrade", "Upgrade, keep-alive", "upgrade", "UPGRADE", " keep-alive ,upgrade "],
)
def test_connection_token_list_containing_upgrade_is_accepted(connection):
    """Firefox sends "keep-alive, Upgrade": Connection is a case-insensitive token list."""
    assert check_upgrade(make_request(replacing("Connection", connection))) == KEY


def test_connection_and_upgrade_may_be_split_over_several_fields():
    """Repeated fields are one comma-separated list (RFC 7230 3.2.2)."""
    headers = replacing("Connection", "keep-alive", "Upgrade")
    headers = [(n, v) for n, v in headers if n != "Upgrade"] + [
        ("Upgrade", "h2c"),
        ("Upgrade", "WebSocket"),
    ]
    assert check_upgrade(make_request(headers)) == KEY


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        (without("Upgrade"), 400, "Upgrade"),
        (replacing("Upgrade", "h2c"), 400, "Upgrade"),
        (replacing("Upgrade", "websocket2"), 400, "Upgrade"),
        (without("Connection"), 400, "Connection"),
        (replacing("Connection", "keep-alive"), 400, "Connection"),
        (replacing("Connection", "upgraded"), 400, "Connection"),
        (without("Host"), 400, "Host"),
        (replacing("Host", "a", "b"), 400, "Host"),
        (replacing("Sec-WebSocket-Version", "13", "13"), 400, "Sec-WebSocket-Version"),
        (without("Sec-WebSocket-Key"), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", KEY, KEY), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", ""), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ="), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j!Q=="), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=a"), 400, "Sec-WebSocket-Key"),
        (replacing("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode()), 400, "Key"),
        (replacing("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode()), 400, "Key"),
        (replacing("Sec-WebSocket-Key", f"{KEY}, {KEY}"), 400, "Sec-WebSocket-Key"),
        ([*MINIMAL_HEADERS, ("Sec-WebSocket-Extensions", "a;")], 400, "Extensions"),
        ([*MINIMAL_HEADERS, ("Sec-WebSocket-Extensions", "a b")], 400, "Extensions"),
    ],
)
def test_invalid_upgrade_request_is_refused(headers, status, reason):
    """Each RFC 6455 4.2.1 requirement has its own refusal."""
    with pytest.raises(HandshakeError) as info:
        check_upgrade(make_request(headers))
    assert info.value.status == status
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "headers", [replacing("Sec-WebSocket-Version", "8"), without("Sec-WebSocket-Version")]
)
def test_unsupported_version_gets_426_with_supported_version(headers):
    """RFC 6455 4.2.2: answer 426 and advertise Sec-WebSocket-Version: 13."""
    with pytest.raises(HandshakeError) as info:
        check_upgrade(make_request(headers))
    error = info.value
    assert error.status == 426
    assert ("Sec-WebSocket-Version", "13") in error.headers
    wire = error_response(error).serialize()
    assert wire.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in wire
    assert b"\r\nUpgrade: websocket\r\n" in wire


def test_handshake_error_response_is_plain_text_and_closes():
    """Error responses carry the short reason as text and end the connection."""
    error = HandshakeError(400, "missing Host header")
    assert str(error) == "400 missing Host header"
    assert error_response(error).serialize() == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 20\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"missing Host header\n"
    )


# ---------------------------------------------------------------------------
# Headers


def test_get_tokens_splits_every_field_lowercases_and_drops_empties():
    """Connection/Upgrade are token lists that may span fields."""
    headers = Headers([("Connection", " Keep-Alive ,, Upgrade"), ("connection", "TE")])
    assert headers.get_tokens("CONNECTION") == ["keep-alive", "upgrade", "te"]
    assert headers.get_tokens("Upgrade") == []


def test_get_all_returns_a_copy():
    """Callers cannot corrupt the parsed request through a returned list."""
    headers = Headers([("A", "1")])
    headers.get_all("a").append("2")
    assert headers.get_all("a") == ["1"]


# ---------------------------------------------------------------------------
# Subprotocols


def test_parse_header_list_strips_and_preserves_case():
    """Sec-WebSocket-Protocol items keep their case; empty items are ignored."""
    assert parse_header_list(["chat, SuperChat", " ,v2.json ,"]) == ["chat", "SuperChat", "v2.json"]
    assert parse_header_list([]) == []


def test_subprotocol_choice_follows_the_servers_order():
    """The server's preference wins over the client's."""
    request = make_request([*MINIMAL_HEADERS, ("Sec-WebSocket-Protocol", "chat, superchat")])
    assert negotiate_subprotocol(request, ["superchat", "chat"]) == "superchat"
    assert negotiate_subprotocol(request, ["chat", "superchat"]) == "chat"
    assert negotiate_subprotocol(request, ["other", "chat"]) == "chat"


def test_subprotocol_none_when_nothing_matches_or_nothing_offered():
    """No agreement means no Sec-WebSocket-Protocol field (RFC 6455 4.2.2)."""
    offered = make_request([*MINIMAL_HEADERS, ("Sec-WebSocket-Protocol", "chat")])
    assert negotiate_subprotocol(offered, ["other"]) is None
    assert negotiate_subprotocol(offered, []) is None
    assert negotiate_subprotocol(offered, ["CHAT"]) is None  # names are case-sensitive
    assert negotiate_subprotocol(make_request(MINIMAL_HEADERS), ["chat"]) is None


def test_subprotocols_offered_over_several_fields():
    """The offer may be split over multiple Sec-WebSocket-Protocol fields."""
    request = make_request(
        [*MINIMAL_HEADERS, ("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b, c")]
    )
    assert negotiate_subprotocol(request, ["c", "b"]) == "c"


# ---------------------------------------------------------------------------
# Extensions (RFC 6455 9.1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        (["foo"], [("foo", [])]),
        (["Foo; Bar; BAZ=Qux"], [("foo", [("bar", None), ("baz", "Qux")])]),
        (
            ["permessage-deflate; client_max_window_bits, permessage-deflate"],
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("permessage-deflate", []),
            ],
        ),
        (["foo", "bar; baz=2"], [("foo", []), ("bar", [("baz", "2")])]),
        (
            ["mux; max-channels=4; flow-control, deflate-stream"],
            [
                ("mux", [("max-channels", "4"), ("flow-control", None)]),
                ("deflate-stream", []),
            ],
        ),
        (['x; a="10"; b = "q\\u\\-o" ; c= 3'], [("x", [("a", "10"), ("b", "qu-o"), ("c", "3")])]),
        (["x; a=1; a=2"], [("x", [("a", "1"), ("a", "2")])]),
        ([" , foo ,, bar , "], [("foo", []), ("bar", [])]),
        ([""], []),
    ],
)
def test_parse_extensions(values, expected):
    """Names lowercased, params ordered (duplicates kept), quoted values unescaped."""
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    "value",
    [
        "foo;",
        "foo; ",
        ";foo",
        "foo bar",
        "foo; a b",
        "foo; a=",
        "foo; a==1",
        'foo; a=""',
        'foo; a="1 2"',
        'foo; a="1',
        'foo; a="a,b"',
        "foo; a=1 2",
        "f(o)o",
        "foo; =1",
        "foo/1",
    ],
)
def test_parse_extensions_refuses_syntax_errors(value):
    """RFC 6455 9.1: malformed values MUST fail the connection (400)."""
    with pytest.raises(HandshakeError) as info:
        parse_extensions([value])
    assert info.value.status == 400


def test_format_extension_round_trips_through_parse():
    """What the server renders, a client parses back identically."""
    params = [("server_no_context_takeover", None), ("client_max_window_bits", "10")]
    text = format_extension("permessage-deflate", params)
    assert text == "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    assert parse_extensions([text]) == [("permessage-deflate", params)]
    assert format_extension("x") == "x"


@pytest.mark.parametrize(
    ("name", "params"),
    [("a b", []), ("x", [("p q", None)]), ("x", [("p", "1 2")]), ("x", [("p", "")])],
)
def test_format_extension_refuses_non_tokens(name, params):
    """The 9.1 grammar has no room for spaces or empty values."""
    with pytest.raises(ValueError):
        format_extension(name, params)


# ---------------------------------------------------------------------------
# Origin


def with_origin(*origins: str) -> Request:
    return make_request(MINIMAL_HEADERS + [("Origin", o) for o in origins])


def test_no_allow_list_accepts_any_origin():
    """origins=None disables the check (the RFC's default: accept from anywhere)."""
    check_origin(with_origin("https://evil.example"), None)
    check_origin(with_origin(), None)


def test_allowed_origin_matches_case_insensitively():
    """Scheme and host are case-insensitive, so the comparison is too."""
    check_origin(
        with_origin("https://App.Example.com"), ["http://other", "https://app.example.COM"]
    )
    check_origin(with_origin("null"), ["null"])


@pytest.mark.parametrize(
    ("request_origins", "allowed", "status"),
    [
        (("https://evil.example",), ["https://app.example"], 403),
        (("https://app.example:8443",), ["https://app.example"], 403),
        ((), ["https://app.example"], 403),
        (("https://app.example", "https://app.example"), ["https://app.example"], 400),
        (("https://app.example",), [], 403),
    ],
)
def test_disallowed_or_missing_origin_is_refused(request_origins, allowed, status):
    """RFC 6455 10.2: an unexpected origin SHOULD get 403 Forbidden."""
    with pytest.raises(HandshakeError) as info:
        check_origin(with_origin(*request_origins), allowed)
    assert info.value.status == status
    if status == 403:
        assert info.value.reason == "origin not allowed"


def test_missing_origin_allowed_when_list_contains_empty_string():
    """Non-browser clients send no Origin; "" in the list admits them."""
    check_origin(with_origin(), ["https://app.example", ""])
    with pytest.raises(HandshakeError):
        check_origin(with_origin("https://evil.example"), ["https://app.example", ""])


# ---------------------------------------------------------------------------
# Response.serialize


def test_response_defaults_reason_and_adds_length_and_close():
    """Non-101 responses are self-delimiting and announce the close."""
    response = Response(404, headers=[("Content-Type", "text/plain")], body=b"nope")
    assert response.reason == "Not Found"
    assert response.serialize() == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 4\r\nConnection: close\r\n\r\nnope"
    )


def test_response_keeps_caller_connection_and_matching_length():
    """Fields the caller set are not duplicated."""
    response = Response(
        200, "Fine", [("connection", "keep-alive"), ("Content-Length", "2")], body=b"ok"
    )
    assert response.serialize() == (
        b"HTTP/1.1 200 Fine\r\nconnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    )


def test_response_unknown_status_and_no_content():
    """Unknown codes get an empty phrase; 204 gets no Content-Length (RFC 7230 3.3.2)."""
    assert (
        Response(599).serialize()
        == b"HTTP/1.1 599 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert Response(204).serialize() == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def test_plain_101_without_accept_prefix_serializes():
    """A 101 built by hand still renders without Content-Length or Connection: close."""
    response = Response(101, headers=[("Connection", "upgrade"), ("Upgrade", "websocket")])
    assert response.serialize() == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    )


@pytest.mark.parametrize(
    "response",
    [
        Response(200, headers=[("X-Evil", "a\r\nSet-Cookie: pwned=1")]),
        Response(200, headers=[("X-Evil", "a\nb")]),
        Response(200, headers=[("X-Evil", "a\rb")]),
        Response(200, headers=[("X-Evil", "a\x00b")]),
        Response(200, headers=[("X-Evil\r\nSet-Cookie", "pwned=1")]),
        Response(200, headers=[("X Evil", "1")]),
        Response(200, headers=[("", "1")]),
        Response(200, "OK\r\nSet-Cookie: pwned=1"),
        Response(
            101,
            "Switching Protocols",
            [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("X", "\n")],
        ),
        accept_response(KEY, headers=[("X-Evil", "a\r\nb: c")]),
    ],
)
def test_response_refuses_header_injection(response):
    """CR/LF in a field or phrase would let a caller forge headers: ValueError."""
    with pytest.raises(ValueError, match="injection"):
        response.serialize()


@pytest.mark.parametrize(
    "response",
    [
        Response(200, headers=[("Content-Length", "5")], body=b"ok"),
        Response(101, body=b"x"),
        Response(101, "", [("Upgrade", "websocket"), ("Connection", "Upgrade")], b"x"),
        Response(304, body=b"x"),
        Response(1000),
        Response(42),
    ],
)
def test_response_refuses_inconsistent_framing(response):
    """A wrong Content-Length or a body where none may be sent would desync the peer."""
    with pytest.raises(ValueError):
        response.serialize()


# ---------------------------------------------------------------------------
# Client side


def test_generate_key_is_a_fresh_16_byte_nonce():
    """RFC 6455 4.1: a random 16-byte value, base64-encoded, new per connection."""
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)


def test_client_request_renders_rfc_handshake():
    """The client head carries the RFC 6455 4.1 mandatory fields in order."""
    data = client_request(
        "example.com:8080",
        "/chat?x=1",
        KEY,
        subprotocols=["chat", "superchat"],
        extensions="permessage-deflate; client_max_window_bits",
        headers=[("Origin", "http://example.com"), ("User-Agent", "fastws")],
    )
    assert data == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Origin: http://example.com\r\n"
        b"User-Agent: fastws\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "chat"},
        {"path": "/a b"},
        {"path": "/a#b"},
        {"path": "/caf\xe9"},
        {"host_header": ""},
        {"host_header": "a\r\nX: y"},
        {"host_header": "a b"},
        {"key": "short"},
        {"key": KEY + "\r\nX: y"},
        {"subprotocols": ["chat", "chat"]},
        {"subprotocols": ["a b"]},
        {"subprotocols": [""]},
        {"extensions": "a;;"},
        {"extensions": "a\r\nX: y"},
        {"headers": [("X", "a\r\nb")]},
        {"headers": [("Sec-WebSocket-Key", KEY)]},
        {"headers": [("host", "other")]},
    ],
)
def test_client_request_refuses_invalid_input(kwargs):
    """Bad input fails loudly on our side instead of producing a broken or forged head."""
    arguments = {"host_header": "a", "path": "/", "key": KEY, **kwargs}
    with pytest.raises(ValueError):
        client_request(**arguments)


def round_trip(subprotocols=(), supported=(), extra=()):
    """Client head -> server parser/validator -> 101 -> client parser -> check_response."""
    key = generate_key()
    request = parse(client_request("example.com", "/ws", key, subprotocols=subprotocols))
    server_key = check_upgrade(request)
    chosen = negotiate_subprotocol(request, supported)
    wire = accept_response(server_key, subprotocol=chosen, headers=extra).serialize()
    parser = ResponseParser()
    response = parser.feed(wire + b"\x81\x02hi")
    assert response is not None
    assert parser.leftover == b"\x81\x02hi"
    return check_response(response, key, subprotocols), response


def test_client_server_round_trip():
    """Our client and our server agree with each other end to end."""
    agreed, response = round_trip(extra=[("Server", "fastws")])
    assert agreed is None
    assert (response.status, response.reason, response.version) == (
        101,
        "Switching Protocols",
        "HTTP/1.1",
    )
    assert response.headers["server"] == "fastws"


def test_client_server_round_trip_with_subprotocol():
    """The subprotocol the server picks is what the client reports."""
    agreed, _ = round_trip(subprotocols=["chat", "superchat"], supported=["superchat"])
    assert agreed == "superchat"


def response_for(
    *fields: tuple[str, str], status: str = "101 Switching Protocols"
) -> ClientResponse:
    data = f"HTTP/1.1 {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    response = ResponseParser().feed(data.encode())
    assert response is not None
    return response


GOOD = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT))


def good_without(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in GOOD if n != name]


def test_check_response_accepts_case_variants_and_whitespace():
    """Upgrade/Connection compare case-insensitively; Accept ignores surrounding OWS."""
    response = response_for(
        ("UPGRADE", "WebSocket"),
        ("connection", "keep-alive, upgrade"),
        ("Sec-WebSocket-Accept", f"  {ACCEPT} "),
    )
    assert check_response(response, KEY, []) is None


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (GOOD, "403 Forbidden", "HTTP 403 Forbidden"),
        (GOOD, "200 OK", "HTTP 200"),
        (good_without("Upgrade"), "101 Switching Protocols", "Upgrade"),
        ([*good_without("Upgrade"), ("Upgrade", "h2c")], "101 Switching Protocols", "Upgrade"),
        (good_without("Connection"), "101 Switching Protocols", "Connection"),
        ([*good_without("Connection"), ("Connection", "close")], "101 x", "Connection"),
        (
            good_without("Sec-WebSocket-Accept"),
            "101 Switching Protocols",
            "missing Sec-WebSocket-Accept",
        ),
        (
            [
                *good_without("Sec-WebSocket-Accept"),
                ("Sec-WebSocket-Accept", accept_key(generate_key())),
            ],
            "101 x",
            "mismatch",
        ),
        ([*GOOD, ("Sec-WebSocket-Accept", ACCEPT)], "101 x", "mismatch"),
        ([*GOOD, ("Sec-WebSocket-Protocol", "other")], "101 x", "not offered"),
        ([*GOOD, ("Sec-WebSocket-Protocol", "chat, superchat")], "101 x", "one subprotocol"),
        (
            [*GOOD, ("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "chat")],
            "101 x",
            "one subprotocol",
        ),
        ([*GOOD, ("Sec-WebSocket-Extensions", "permessage-deflate")], "101 x", "not offered"),
        (
            [*GOOD, ("Sec-WebSocket-Extensions", "permessage-deflate;")],
            "101 x",
            "invalid Sec-WebSocket-Extensions",
        ),
    ],
)
def test_check_response_fails_the_connection(fields, status, message):
    """Each RFC 6455 4.1 response check raises InvalidHandshake naming the problem."""
    response = response_for(*fields, status=status)
    with pytest.raises(InvalidHandshake, match=message) as info:
        check_response(response, KEY, ["chat"])
    assert info.value.response is response


def test_check_response_accepts_offered_extension_when_declared():
    """A client that offered an extension may pass its name and get it accepted."""
    response = response_for(
        *GOOD, ("Sec-WebSocket-Extensions", "Permessage-Deflate; server_no_context_takeover")
    )
    assert check_response(response, KEY, [], extensions=["permessage-deflate"]) is None


def test_response_parser_keeps_body_in_leftover_and_allows_empty_reason():
    """A refusal's body is available to the client; "HTTP/1.1 101" alone is legal."""
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n")
    assert response is not None
    assert (response.status, response.reason, parser.leftover) == (403, "Forbidden", b"no\n")
    response = ResponseParser().feed(b"HTTP/1.1 101\r\n\r\n")
    assert response is not None and (response.status, response.reason) == (101, "")


def test_response_parser_byte_by_byte():
    """The response parser shares the request parser's incremental behaviour."""
    wire = accept_response(KEY, subprotocol="chat").serialize()
    parser = ResponseParser()
    results = [parser.feed(wire[i : i + 1]) for i in range(len(wire))]
    assert results[:-1] == [None] * (len(wire) - 1)
    assert results[-1] == ResponseParser().feed(wire)


@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (b"SSH-2.0-OpenSSH", {}, "not HTTP"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", {}, "malformed status line"),
        (b"HTTP/1.0 101 Switching Protocols\r\n\r\n", {}, "version"),
        (b"HTTP/1.1 1O1 Switching\r\n\r\n", {}, "status line"),
        (b"HTTP/1.1 1011 Switching\r\n\r\n", {}, "status line"),
        (b"HTTP/1.1 101 Switch\x00ing\r\n\r\n", {}, "status line"),
        (b"HTTP/1.1 101 OK\r\nBad Header\r\n\r\n", {}, "malformed header line"),
        (b"HTTP/1.1 101 " + b"x" * 200 + b"\r\n\r\n", {"max_status_line": 100}, "too long"),
        (b"HTTP/1.1 101 OK\r\n" + b"A: b\r\n" * 5 + b"\r\n", {"max_headers": 4}, "too many"),
        (b"HTTP/1.1 101 OK\r\nA: " + b"b" * 200, {"max_header_size": 100}, "too large"),
    ],
)
def test_response_parser_refuses_malformed_responses(data, limits, message):
    """A broken or oversized server response fails the client with InvalidHandshake."""
    with pytest.raises(InvalidHandshake, match=message):
        ResponseParser(**limits).feed(data)


# ---------------------------------------------------------------------------
# Property-based tests


def _feed_chunks(parser, data: bytes, cuts: list[int]):
    """Feed ``data`` split at ``cuts``; stop at the first complete head."""
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    result = None
    for start, stop in itertools.pairwise(bounds):
        result = parser.feed(data[start:stop])
        if result is not None:
            break
    return result


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for position, delete, insert in edits:
        position %= len(data) + 1
        data = data[:position] + insert + data[position + delete :]
    return data


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 4096), max_size=8))
def test_fuzz_any_bytes_give_request_none_or_handshake_error(data, cuts):
    """Arbitrary input never escapes as an exception other than HandshakeError."""
    parser = RequestParser(max_request_line=512, max_headers=16, max_header_size=1024)
    try:
        result = _feed_chunks(parser, data, cuts)
    except HandshakeError as error:
        assert 400 <= error.status < 500
        error_response(error).serialize()  # the refusal itself must be sendable
    else:
        assert result is None or isinstance(result, Request)


_EDIT = st.tuples(
    st.integers(0, len(CHROMIUM)),
    st.integers(0, 8),
    st.sampled_from(
        [b"", b"\r", b"\n", b"\r\n", b":", b" ", b"\t", b"\x00", b"\xff", b",", b";", b'"', b"="]
    )
    | st.binary(max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(edits=st.lists(_EDIT, max_size=4), cuts=st.lists(st.integers(0, 4096), max_size=6))
def test_fuzz_mutated_browser_handshake_is_parsed_or_refused(edits, cuts):
    """Near-valid requests reach deep paths; only HandshakeError may come out of them."""
    data = _mutate(CHROMIUM, edits)
    try:
        request = _feed_chunks(RequestParser(), data, cuts)
        if request is not None:
            check_upgrade(request)
            parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
            negotiate_subprotocol(request, ["chat"])
            check_origin(request, ["http://localhost:8000"])
    except HandshakeError as error:
        error_response(error).serialize()


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(CHROMIUM) + 16), max_size=12))
def test_fuzz_any_split_parses_like_one_feed(cuts):
    """Chunk boundaries, anywhere, do not change the parsed request or the leftover."""
    data = CHROMIUM + b"\x81\x8atail-bytes"
    expected_parser = RequestParser()
    expected = expected_parser.feed(data)
    parser = RequestParser()
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    result = None
    rest = b""
    for start, stop in itertools.pairwise(bounds):
        if result is None:
            result = parser.feed(data[start:stop])
        else:
            rest += data[start:stop]
    assert result == expected
    assert parser.leftover + rest == expected_parser.leftover


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_fuzz_response_parser_only_raises_invalid_handshake(data):
    """The client survives any server reply: a response, None, or InvalidHandshake."""
    try:
        response = ResponseParser(max_header_size=256).feed(b"HTTP/1.1 " + data)
        if response is not None:
            check_response(response, KEY, ["chat"])
    except InvalidHandshake:
        pass


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('ab=;," \t\\\x7f-')), max_size=40))
def test_fuzz_extension_parser_only_raises_handshake_error(text):
    """parse_extensions either returns a list or refuses with 400, and agrees with check_upgrade."""
    request = make_request([*MINIMAL_HEADERS, ("Sec-WebSocket-Extensions", text)])
    try:
        parsed = parse_extensions([text])
    except HandshakeError as error:
        assert error.status == 400
        with pytest.raises(HandshakeError):
            check_upgrade(request)
    else:
        assert check_upgrade(request) == KEY
        for name, params in parsed:
            assert parse_extensions([format_extension(name, params)]) == [(name, params)]
