"""The opening handshake, sans I/O: what each new connection costs before its first frame.

Scenario f of the end-to-end benchmark (handshakes/s) is bounded by this plus the event loop.

pytest bench/micro/test_handshake.py --benchmark-enable --benchmark-only
"""

import pytest

from fastws.protocol.handshake import (
    RequestParser,
    accept_key,
    accept_response,
    check_upgrade,
    parse_extensions,
)

# What Chromium sends (bench and docs: /work/shared/RECIPES.md lists its fields).
BROWSER = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/156.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8000\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
# What the benchmark's load generator sends: the minimum RFC 6455 asks for.
MINIMAL = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
REQUESTS = {"minimal": MINIMAL, "browser": BROWSER}


def _parse(data: bytes, pieces: int = 1):
    parser = RequestParser()
    step = -(-len(data) // pieces)
    request = None
    for i in range(0, len(data), step):
        request = parser.feed(data[i : i + step])
    return request


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_parse_request(benchmark, kind: str) -> None:
    """A whole request head in one read."""
    request = benchmark(_parse, REQUESTS[kind])
    assert request is not None and request.key == "dGhlIHNhbXBsZSBub25jZQ=="


def test_parse_request_in_pieces(benchmark) -> None:
    """The browser's head split over 4 reads (a slow or fragmenting client)."""
    assert benchmark(_parse, BROWSER, 4) is not None


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_check_upgrade(benchmark, kind: str) -> None:
    """Validation of a parsed request (Upgrade, Connection, key, version)."""
    request = _parse(REQUESTS[kind])
    assert benchmark(check_upgrade, request) == "dGhlIHNhbXBsZSBub25jZQ=="


def test_accept_response(benchmark) -> None:
    """SHA-1 of the key and the serialized 101 response."""
    wire = benchmark(lambda: accept_response("dGhlIHNhbXBsZSBub25jZQ==").serialize())
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==").encode() in wire


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_server_handshake(benchmark, kind: str) -> None:
    """Everything the server does from request bytes to response bytes."""
    data = REQUESTS[kind]

    def run() -> bytes:
        request = RequestParser().feed(data)
        assert request is not None
        return accept_response(check_upgrade(request)).serialize()

    assert benchmark(run).startswith(b"HTTP/1.1 101")


def test_parse_extensions(benchmark) -> None:
    """The browser's permessage-deflate offer."""
    offer = ["permessage-deflate; client_max_window_bits"]
    assert benchmark(parse_extensions, offer)[0][0] == "permessage-deflate"
