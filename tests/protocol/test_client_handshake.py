"""fastws.protocol.client: the client's opening handshake, sans I/O.

The server on the other side is the `websockets` library's sans-I/O ServerProtocol: our
request must satisfy a parser nobody here wrote, and its 101 (with subprotocol and
permessage-deflate agreed its way) must satisfy ours. The refusals are built by hand, one
RFC 6455 4.1 / RFC 7692 rule each.
"""

from __future__ import annotations

import base64

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol

from fastws.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from fastws.protocol.client import (
    ClientHandshake,
    WebSocketURI,
    compression_options,
    header_list,
    parse_uri,
)
from fastws.protocol.deflate import DeflateOptions
from fastws.protocol.handshake import Headers, accept_key

# -- URIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected", "host_header"),
    [
        ("ws://example.com", WebSocketURI(False, "example.com", 80, "/"), "example.com"),
        ("wss://example.com/", WebSocketURI(True, "example.com", 443, "/"), "example.com"),
        ("ws://example.com:443/", WebSocketURI(False, "example.com", 443, "/"), "example.com:443"),
        ("WS://Example.COM:8000/a?b=c", WebSocketURI(False, "example.com", 8000, "/a?b=c"), None),
        ("ws://[::1]:8000/x", WebSocketURI(False, "::1", 8000, "/x"), "[::1]:8000"),
        ("ws://127.0.0.1:9/?", WebSocketURI(False, "127.0.0.1", 9, "/"), "127.0.0.1:9"),
        (
            "ws://h/caf\u00e9 x?q=\u2603",
            WebSocketURI(False, "h", 80, "/caf%C3%A9%20x?q=%E2%98%83"),
            "h",
        ),
        ("ws://h/a%20b", WebSocketURI(False, "h", 80, "/a%20b"), "h"),
        ("ws://b\u00fccher.example/", WebSocketURI(False, "xn--bcher-kva.example", 80, "/"), None),
        ("ws://u%40x:p%3Aw@h/", WebSocketURI(False, "h", 80, "/", ("u@x", "p:w")), "h"),
    ],
)
def test_parse_uri(uri: str, expected: WebSocketURI, host_header: str | None) -> None:
    """Scheme, default ports, IPv6 brackets, percent-encoding of what may not go in a request
    line (non-ASCII, spaces), IDNA host names and user info come out as RFC 6455 3 says."""
    parsed = parse_uri(uri)
    assert parsed == expected
    if host_header is not None:
        assert parsed.host_header == host_header


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://example.com/", "scheme isn't ws or wss"),
        ("example.com:8000", "scheme isn't ws or wss"),
        ("ws:///path", "hostname isn't provided"),
        ("ws://:8000/", "hostname isn't provided"),
        ("ws://example.com/#frag", "fragment"),
        ("ws://example.com/#", "fragment"),
        ("ws://example.com:99999/", "out of range"),
        ("ws://example.com:http/", "Port could not be cast"),
        ("ws://example.com:0/", "port 0"),
        ("ws://user@example.com/", "username provided without password"),
        ("ws://exa<mple.com/", "invalid hostname"),
        ("ws://example.com/%zz", "hex digits"),
    ],
)
def test_parse_uri_refuses(uri: str, why: str) -> None:
    """A URI the client cannot use is an InvalidURI that names the URI and the fault (and is
    a ValueError, what the clients raised before)."""
    with pytest.raises(InvalidURI, match=why) as info:
        parse_uri(uri)
    assert info.value.uri == uri
    assert repr(uri) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_uri_cannot_inject_a_header() -> None:
    """CR/LF in a URI's path or query never start a header line of their own (urlsplit drops
    them, the rest is percent-encoded): the request has exactly the handshake's fields."""
    uri = parse_uri("ws://h/a\r\nX-Evil: 1?q=\r\nY: 2")
    request_line, *fields = ClientHandshake(uri).request.decode().split("\r\n")
    assert request_line == "GET /aX-Evil:%201?q=Y:%202 HTTP/1.1"
    names = [field.split(":")[0] for field in fields if field]
    assert names == [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
    ]


# -- headers and options -------------------------------------------------------------------------


def test_header_list_accepts_dict_pairs_and_headers() -> None:
    """headers= as a dict, a list of pairs (repeats kept) or fastws Headers: the same pairs."""
    assert header_list({"A": "1", "B": "2"}) == [("A", "1"), ("B", "2")]
    assert header_list([("C", "1"), ("C", "2")]) == [("C", "1"), ("C", "2")]
    assert header_list(Headers([("D", "x"), ("d", "y")])) == [("D", "x"), ("d", "y")]
    assert header_list(None) == []
    with pytest.raises(TypeError, match="pairs"):
        header_list(["X-Token: abc"])  # type: ignore[list-item]


def test_compression_options() -> None:
    """compression= takes "deflate", DeflateOptions or None, nothing else."""
    assert compression_options("deflate") == DeflateOptions()
    options = DeflateOptions(window_bits=10)
    assert compression_options(options) is options
    assert compression_options(None) is None
    with pytest.raises(ValueError, match="compression"):
        compression_options("gzip")


# -- against websockets' sans-I/O server ---------------------------------------------------------


def serve(
    handshake: ClientHandshake, server: ServerProtocol, extra: dict[str, str] | None = None
) -> tuple[WsRequest, bytes]:
    """Give our request to `server`; return the request it parsed and its response bytes."""
    server.receive_data(handshake.request)
    (request,) = server.events_received()
    assert isinstance(request, WsRequest)
    response = server.accept(request)
    for name, value in (extra or {}).items():
        response.headers[name] = value
    server.send_response(response)
    assert server.handshake_exc is None, server.handshake_exc
    return request, b"".join(server.data_to_send())


def test_handshake_with_websockets_server() -> None:
    """The request passes websockets' server checks (path, query, our headers, key) and its
    101 passes ours: handshake.response holds it, no subprotocol, no compression."""
    uri = parse_uri("ws://127.0.0.1:8765/room/1?x=2")
    handshake = ClientHandshake(uri, headers={"X-Token": "abc", "Cookie": "a=1"})
    request, answer = serve(handshake, ServerProtocol(), {"X-Server": "ws"})
    assert request.path == "/room/1?x=2"
    assert request.headers["Host"] == "127.0.0.1:8765"
    assert request.headers["X-Token"] == "abc"
    assert request.headers["Sec-WebSocket-Key"] == handshake.key
    response = handshake.receive_data(answer)
    assert response is not None and response is handshake.response
    assert response.status == 101
    assert response.headers["X-Server"] == "ws"
    assert response.headers["Sec-WebSocket-Accept"] == accept_key(handshake.key)
    assert (handshake.subprotocol, handshake.deflate, handshake.leftover) == (None, None, b"")


def test_subprotocol_and_deflate_agreed_with_websockets_server() -> None:
    """The server picks one of our subprotocols and accepts our permessage-deflate offer with
    its own parameters: the agreement is ready for the connection."""
    handshake = ClientHandshake(
        parse_uri("ws://h/"), subprotocols=["v2", "v1"], compression=DeflateOptions()
    )
    server = ServerProtocol(
        subprotocols=["v1"],
        extensions=[ServerPerMessageDeflateFactory(server_no_context_takeover=True)],
    )
    _, answer = serve(handshake, server)
    assert handshake.receive_data(answer) is not None
    assert handshake.subprotocol == "v1"
    assert handshake.deflate is not None


def test_compression_declined_by_websockets_server() -> None:
    """Offered, not accepted: the connection is simply not compressed."""
    handshake = ClientHandshake(parse_uri("ws://h/"), compression=DeflateOptions())
    _, answer = serve(handshake, ServerProtocol())
    assert handshake.receive_data(answer) is not None
    assert handshake.deflate is None


def test_user_info_becomes_basic_authorization() -> None:
    """ws://user:pass@host sends HTTP Basic credentials (RFC 7617), unless the caller set
    its own Authorization header."""
    handshake = ClientHandshake(parse_uri("ws://al%40ice:s3cret@h/"))
    request, _ = serve(handshake, ServerProtocol())
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"al@ice:s3cret").decode(
        "ascii"
    )
    own = ClientHandshake(parse_uri("ws://u:p@h/"), headers=[("Authorization", "Bearer t")])
    request, _ = serve(own, ServerProtocol())
    assert request.headers.get_all("Authorization") == ["Bearer t"]


def test_response_fed_byte_by_byte_with_frame_after_it() -> None:
    """The head may arrive in any pieces; frame bytes after it are kept in leftover."""
    handshake = ClientHandshake(parse_uri("ws://h/"))
    _, answer = serve(handshake, ServerProtocol())
    frame = b"\x81\x02hi"
    data = answer + frame
    results = [handshake.receive_data(data[i : i + 1]) for i in range(len(answer))]
    assert results[:-1] == [None] * (len(answer) - 1) and results[-1] is not None
    assert handshake.leftover == b""  # nothing past the head yet
    handshake2 = ClientHandshake(parse_uri("ws://h/"))
    _, answer2 = serve(handshake2, ServerProtocol())
    assert handshake2.receive_data(answer2 + frame) is not None
    assert handshake2.leftover == frame
    with pytest.raises(RuntimeError, match="already complete"):
        handshake2.receive_data(b"more")


@pytest.mark.parametrize("status", [403, 404, 503])
def test_status_other_than_101_is_invalid_status(status: int) -> None:
    """RFC 6455 4.1: a status other than 101 ends the handshake; InvalidStatus carries the
    response so that a caller can tell 503 (try again) from 403 (do not)."""
    handshake = ClientHandshake(parse_uri("ws://h/"))
    server = ServerProtocol()
    server.receive_data(handshake.request)
    (_request,) = server.events_received()
    server.send_response(server.reject(status, "no\n"))
    with pytest.raises(InvalidStatus, match=f"HTTP {status}") as info:
        handshake.receive_data(b"".join(server.data_to_send()))
    assert info.value.response.status == status
    assert info.value.response is handshake.response


def _answer(handshake: ClientHandshake, *lines: str) -> bytes:
    """A 101 with the right accept key and `lines` added."""
    head = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(handshake.key)}",
        *lines,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("offer", "lines", "message"),
    [
        # 4.1: an extension "not present in the client's handshake" fails the connection.
        (None, ["Sec-WebSocket-Extensions: permessage-deflate"], "not offered"),
        # 4.1: a subprotocol "not present in the client's handshake" fails the connection.
        (None, ["Sec-WebSocket-Protocol: chat"], "not offered"),
        # RFC 7692 7.1.2.1: server_max_window_bits outside 8..15.
        (
            DeflateOptions(),
            ["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7"],
            "permessage-deflate",
        ),
        # RFC 7692 5: the same extension twice in the response.
        (
            DeflateOptions(),
            ["Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate"],
            "permessage-deflate",
        ),
    ],
    ids=["extension-not-offered", "subprotocol-not-offered", "bad-window-bits", "twice"],
)
def test_refused_101(offer: DeflateOptions | None, lines: list[str], message: str) -> None:
    """A 101 that agrees to something the client did not ask for, or agrees wrongly, is an
    InvalidHandshake (not InvalidStatus: retrying would not help)."""
    handshake = ClientHandshake(parse_uri("ws://h/"), compression=offer)
    with pytest.raises(InvalidHandshake, match=message) as info:
        handshake.receive_data(_answer(handshake, *lines))
    assert not isinstance(info.value, InvalidStatus)
    assert info.value.response is not None


def test_wrong_accept_key_refused() -> None:
    """RFC 6455 4.1: Sec-WebSocket-Accept must prove the server read this request's key."""
    handshake = ClientHandshake(parse_uri("ws://h/"))
    other = ClientHandshake(parse_uri("ws://h/"))
    with pytest.raises(InvalidHandshake, match="Sec-WebSocket-Accept"):
        handshake.receive_data(_answer(other))


def test_connection_lost_is_retryable_invalid_handshake() -> None:
    """A connection that ends mid-handshake reports InvalidHandshake caused by EOFError (or
    the socket's OSError): the reconnect loop tells it from a refusal by that cause."""
    handshake = ClientHandshake(parse_uri("ws://h/"))
    handshake.receive_data(b"HTTP/1.1 101 Switching")
    exc = handshake.connection_lost()
    assert isinstance(exc, InvalidHandshake) and isinstance(exc.__cause__, EOFError)
    reset = ConnectionResetError()
    assert handshake.connection_lost(reset).__cause__ is reset


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"headers": {"Sec-WebSocket-Key": "x"}}, "set by client_request"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "header injection"),
        ({"subprotocols": ["a b"]}, "invalid subprotocols"),
        ({"subprotocols": ["a", "a"]}, "invalid subprotocols"),
    ],
)
def test_bad_request_options_refused(options: dict[str, object], error: str) -> None:
    """What the caller passes cannot break the request: reserved headers, CR/LF in a value,
    subprotocols that are not unique tokens raise ValueError before anything is sent."""
    with pytest.raises(ValueError, match=error):
        ClientHandshake(parse_uri("ws://h/"), **options)  # type: ignore[arg-type]
