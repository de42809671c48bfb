"""Bad opening handshakes over raw sockets: each gets its HTTP error status and a closed
connection, never a traceback, and the server keeps serving (RFC 6455 4.2.1, 4.2.2, 4.4).

RFC 6455 4.2.1: if the request "does not match the description below, the server MUST stop
processing the client's handshake and return an HTTP response with an appropriate error code
(such as 400 Bad Request)."
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import ServerProcess

from tests.wire import OP_TEXT, TIMEOUT, HTTPResponse, PeerClosed, WireClient, encode_frame

# Python internals that must never reach a client.
LEAK = re.compile(r"Traceback|File \"|\.py\b|[A-Z][a-z]+(Error|Exception)\b")


def assert_clean_error(response: HTTPResponse) -> None:
    """An error response is well-formed and says nothing about the implementation."""
    status, headers, body = response
    assert 400 <= status < 600, response
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body)
    text = body.decode("latin-1") + "\n".join(f"{k}: {v}" for k, v in headers.items())
    assert not LEAK.search(text), f"the error response leaks implementation details: {response}"


def assert_still_serving(server: ServerProcess) -> None:
    """A normal client still gets a handshake and an echo."""
    with WireClient(server.port) as client:
        client.handshake()
        client.echo()


def reject(server: ServerProcess, request: bytes | Callable[[WireClient], bytes]) -> HTTPResponse:
    """Send `request`, read the error response, check the server then closes the connection."""
    with WireClient(server.port) as client:
        data = request(client) if callable(request) else request
        client.send_raw(data)
        response = client.read_http_response()
        assert_clean_error(response)
        client.assert_server_closes_tcp()
    assert_still_serving(server)
    return response


# Each case: a function of the client building the request bytes, and the accepted statuses.
BAD_REQUESTS: dict[str, tuple[Callable[[WireClient], bytes], set[int]]] = {
    # 4.1 "The method of the request MUST be GET"; RFC 9110 15.5.6 405 Method Not Allowed.
    "post": (lambda c: c.build_request(method="POST"), {405}),
    # 4.1 "the HTTP version MUST be at least 1.1".
    "http-1.0": (lambda c: c.build_request(version="HTTP/1.0"), {400}),
    # 4.2.1 item 2: "A |Host| header field". RFC 9112 3.2: 400 without Host in HTTP/1.1.
    "no-host": (lambda c: c.build_request(headers={"Host": None}), {400}),
    # 4.2.1 item 5: Sec-WebSocket-Key present, "base64-encoded" and "16 bytes in length".
    "no-key": (lambda c: c.build_request(headers={"Sec-WebSocket-Key": None}), {400}),
    "key-not-base64": (
        lambda c: c.build_request(headers={"Sec-WebSocket-Key": "not base64 at all!!"}),
        {400},
    ),
    "key-15-bytes": (
        lambda c: c.build_request(headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}),
        {400},
    ),
    # 11.3.1: Sec-WebSocket-Key "MUST NOT appear more than once in an HTTP request".
    "key-twice": (
        lambda c: c.build_request(
            extra_headers=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
        ),
        {400},
    ),
    # Not HTTP at all.
    "garbage": (lambda c: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", {400}),
    "no-request-line": (lambda c: b"\r\n\r\n", {400}),
    "header-without-colon": (
        lambda c: c.build_request().replace(b"Upgrade: websocket", b"Upgrade websocket"),
        {400},
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_rejected(echo_server: ServerProcess, case: str) -> None:
    """RFC 6455 4.2.1: a malformed handshake gets its error status, then the connection closes;
    no traceback; the server keeps serving."""
    build, statuses = BAD_REQUESTS[case]
    response = reject(echo_server, build)
    assert response.status in statuses, response


# A missing/wrong Upgrade or Connection header is a malformed handshake (400, RFC 6455 4.2.1
# items 3 and 4), but RFC 9110 15.5.22 defines 426 Upgrade Required for exactly "refuses to
# perform the request using the current protocol", and requires the 426 to name the protocol in
# an Upgrade header. Either is correct.
NOT_AN_UPGRADE = {
    "no-upgrade": {"Upgrade": None},
    "upgrade-h2c": {"Upgrade": "h2c"},
    "no-connection": {"Connection": None},
    "connection-keep-alive": {"Connection": "keep-alive"},
}


@pytest.mark.parametrize("case", sorted(NOT_AN_UPGRADE))
def test_not_an_upgrade_rejected(echo_server: ServerProcess, case: str) -> None:
    """RFC 6455 4.2.1 items 3-4: without "Upgrade: websocket" and "Connection: Upgrade" the
    request is refused with 400 (or 426 naming websocket in an Upgrade header)."""
    response = reject(echo_server, lambda c: c.build_request(headers=NOT_AN_UPGRADE[case]))
    assert response.status in (400, 426), response
    if response.status == 426:
        assert response.headers.get("upgrade", "").lower() == "websocket", response


def test_unsupported_version_gets_426_with_supported_version(echo_server: ServerProcess) -> None:
    """RFC 6455 4.2.2 / 4.4: an unsupported Sec-WebSocket-Version gets an error "such as 426
    Upgrade Required" and a Sec-WebSocket-Version header naming the versions understood (13)."""
    response = reject(
        echo_server, lambda c: c.build_request(headers={"Sec-WebSocket-Version": "8"})
    )
    assert response.status == 426, response
    assert response.headers.get("sec-websocket-version") == "13", response


def test_missing_version_rejected(echo_server: ServerProcess) -> None:
    """RFC 6455 4.2.1 item 6: Sec-WebSocket-Version is required: 400 (or 426 naming 13)."""
    response = reject(
        echo_server, lambda c: c.build_request(headers={"Sec-WebSocket-Version": None})
    )
    assert response.status in (400, 426), response
    if response.status == 426:
        assert response.headers.get("sec-websocket-version") == "13", response


# ---------------------------------------------------------------------------------------------
# Oversized requests: the server must answer once its limit is passed, without waiting for (or
# buffering) the rest. The client pushes the bytes from a thread (so a server that stops reading
# cannot block the test) and never finishes the request: a server waiting for the end of the
# head would time out. The server may close with unread bytes pending, which the kernel turns
# into a reset: a reset is accepted, but any response that does arrive must have the status.
# ---------------------------------------------------------------------------------------------


def _push(sock: socket.socket, data: bytes, errors: list[BaseException]) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server closed on us: expected
        pass
    except BaseException as exc:  # pragma: no cover - surfaced by the test
        errors.append(exc)


def oversized(server: ServerProcess, data: bytes, statuses: set[int]) -> None:
    with WireClient(server.port) as client:
        errors: list[BaseException] = []
        client.sock.settimeout(TIMEOUT)
        pusher = threading.Thread(target=_push, args=(client.sock, data, errors), daemon=True)
        pusher.start()
        try:
            response = client.read_http_response()
        except PeerClosed:
            response = None  # reset before the response could be read: accepted
        if response is not None:
            assert response.status in statuses, response
            assert_clean_error(response)
            try:
                client.recv_until_closed()
            except AssertionError:
                raise AssertionError("the server did not close after its error response") from None
        with contextlib.suppress(OSError):  # unblocks the pusher if it is still sending
            client.sock.shutdown(socket.SHUT_RDWR)
        pusher.join(TIMEOUT)
        assert not pusher.is_alive()
        assert not errors, errors
    assert_still_serving(server)


def test_request_line_100kib_rejected(echo_server: ServerProcess) -> None:
    """A 100 KiB request target gets 414 URI Too Long (or 400) before the request is complete."""
    oversized(echo_server, b"GET /" + b"a" * (100 << 10), {414, 400})


def test_10000_headers_rejected(echo_server: ServerProcess) -> None:
    """10,000 header fields get 431 Request Header Fields Too Large (RFC 6585 5)."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Header-%d: v\r\n" % i for i in range(10_000)
    )
    oversized(echo_server, head, {431})


def test_1mib_header_line_rejected(echo_server: ServerProcess) -> None:
    """A single 1 MiB header line gets 431 (RFC 6585 5) without the server reading it all."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (1 << 20)
    oversized(echo_server, head, {431})


# ---------------------------------------------------------------------------------------------
# Valid but awkward deliveries
# ---------------------------------------------------------------------------------------------


def test_handshake_delivered_byte_by_byte(echo_server: ServerProcess) -> None:
    """A request arriving one byte per TCP segment is parsed incrementally and accepted."""
    with WireClient(echo_server.port) as client:
        request = client.build_request()
        for i in range(len(request)):
            client.send_raw(request[i : i + 1])
        status, _, _ = client.read_http_response()
        assert status == 101
        client.echo()


def test_frame_pipelined_with_handshake_is_not_lost(echo_server: ServerProcess) -> None:
    """Bytes after the request head in the same segment are the first frame: they must not be
    dropped with the HTTP parser's buffer (RFC 6455 4.1: the client may send frames once it
    has the 101, but TCP may deliver them together)."""
    with WireClient(echo_server.port) as client:
        client.send_raw(client.build_request() + encode_frame(OP_TEXT, b"early bird"))
        status, _, _ = client.read_http_response()
        assert status == 101
        assert client.recv_message() == (OP_TEXT, b"early bird")


def test_header_names_and_tokens_case_insensitive(echo_server: ServerProcess) -> None:
    """RFC 6455 4.2.1: header names and the "websocket"/"Upgrade" tokens are case-insensitive,
    and Connection may list other tokens."""
    with WireClient(echo_server.port) as client:
        client.handshake(
            headers={
                "Host": None,
                "Upgrade": None,
                "Connection": None,
                "Sec-WebSocket-Key": None,
                "Sec-WebSocket-Version": None,
            },
            extra_headers=[
                ("hOST", f"127.0.0.1:{echo_server.port}"),
                ("upgrade", "WebSocket"),
                ("CONNECTION", "keep-alive, UPGRADE"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("SEC-WEBSOCKET-VERSION", "13"),
            ],
            key="dGhlIHNhbXBsZSBub25jZQ==",
        )
        client.echo()


def test_all_bad_requests_then_server_still_serves(echo_server: ServerProcess) -> None:
    """After every kind of bad request above, the server process is alive and serving."""
    assert echo_server.is_running()
    assert_still_serving(echo_server)
