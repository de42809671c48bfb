"""HTTP/1.1 for ASGI applications (fastws/asgi/http.py): real Starlette and FastAPI apps on a
real server process, requests from httpx and from raw sockets where the wire matters."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import httpx

from tests.asgi.conftest import http_base, raw_exchange


def test_fastapi_routes_answer_with_lifespan_state(fastapi_server: Any) -> None:
    """An unmodified FastAPI app: path and query parameters, a JSON body, state from its
    lifespan in request.state, its own 404 and 422 answers."""
    with httpx.Client(base_url=http_base(fastapi_server)) as client:
        assert client.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}
        created = client.post("/items", json={"name": "thing"}).json()
        assert created == {"created": {"name": "thing"}, "greeting": "hello from lifespan"}
        assert client.get("/hello").text == "Hello, world!"
        assert client.get("/nothing-here").status_code == 404
        assert client.get("/items/not-a-number").status_code == 422


def test_keep_alive_serves_many_requests_on_one_connection(starlette_server: Any) -> None:
    """Fifty requests on one kept-alive connection: one TCP connection for all of them."""
    connections = []
    with httpx.Client(base_url=http_base(starlette_server)) as client:
        for i in range(50):
            response = client.get("/", params={"i": str(i)}, extensions={"trace": None})
            assert response.json()["query"] == f"i={i}"
            assert "connection" not in response.headers  # kept alive
            connections.append(response.extensions["network_stream"])
    assert len({id(stream) for stream in connections}) == 1


def test_pipelined_requests_are_answered_in_order(starlette_server: Any) -> None:
    """Ten requests written at once (a streamed one among them, the last one asking to
    close): ten responses on one connection, in the order of the requests, then the close."""
    requests = b""
    for i in range(10):
        path = "/stream?n=4" if i == 3 else f"/?n={i}"
        close = b"Connection: close\r\n" if i == 9 else b""
        requests += f"GET {path} HTTP/1.1\r\nHost: test\r\n".encode() + close + b"\r\n"
    received = raw_exchange(starlette_server, requests)  # until the server closes
    assert received.count(b"HTTP/1.1 200 OK") == 10
    answers = re.findall(rb'"query":"n=(\d+)"|(part 3\n)', received)
    assert [q.decode() or "stream" for q, _ in answers] == [
        "0", "1", "2", "stream", "4", "5", "6", "7", "8", "9"
    ]  # fmt: skip


def test_chunked_request_body_reaches_the_app_in_pieces(starlette_server: Any) -> None:
    """A chunked upload (no Content-Length) of 2 MiB arrives whole; the app reads it as a
    stream of pieces."""
    piece = b"\xab" * 65536

    def body() -> Any:
        for _ in range(32):
            yield piece

    with httpx.Client(base_url=http_base(starlette_server), timeout=30) as client:
        response = client.post("/upload", content=body())
    assert response.json()["size"] == 32 * 65536
    assert response.json()["pieces"] >= 2


def test_chunked_request_on_the_wire_and_chunked_response(starlette_server: Any) -> None:
    """Transfer-Encoding: chunked both ways, byte for byte: the chunks sent are the body the
    app echoes; a response without Content-Length goes out chunked and ends with 0\\r\\n\\r\\n."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    )
    received = raw_exchange(starlette_server, request, until=b"hello, world")
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 12\r\n" in received
    streamed = raw_exchange(
        starlette_server, b"GET /stream?n=2 HTTP/1.1\r\nHost: t\r\n\r\n", until=b"0\r\n\r\n"
    )
    head, _, body = streamed.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"7\r\npart 0\n\r\n7\r\npart 1\n\r\n0\r\n\r\n"


def test_expect_100_continue(starlette_server: Any) -> None:
    """Expect: 100-continue gets "100 Continue" before the client sends its body, then the
    answer to the whole request."""
    with socket.create_connection((starlette_server.host, starlette_server.port), 10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        final = b""
        while not final.endswith(b"body"):
            final += sock.recv(1024)
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")


def test_http_1_0_and_connection_close(starlette_server: Any) -> None:
    """HTTP/1.0 without keep-alive and Connection: close each get one answer, then the
    server closes the connection."""
    for request in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ):
        received = raw_exchange(starlette_server, request)  # reads until the server closes
        assert received.count(b"200 OK") == 1
        assert b"connection: close" in received.lower()


def test_limits_answer_414_431_413(start_server: Any) -> None:
    """Over max_request_line: 414; over max_headers: 431; a body over max_message_size: 413;
    malformed: 400. One log line each; the server goes on serving."""
    server = start_server(
        "tests.asgi.apps:starlette_app", max_request_line=200, max_headers=10, max_message_size=1000
    )
    long_line = b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    assert raw_exchange(server, long_line).startswith(b"HTTP/1.1 414 ")
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(20)) + b"\r\n"
    assert raw_exchange(server, many).startswith(b"HTTP/1.1 431 ")
    big = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    assert raw_exchange(server, big).startswith(b"HTTP/1.1 413 ")
    chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"
    assert raw_exchange(server, chunked).startswith(b"HTTP/1.1 413 ")
    assert raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    with httpx.Client(base_url=http_base(server)) as client:
        assert client.get("/").status_code == 200
    log = server.stderr()
    for expected in ("414 request line too long", "431 too many request headers", "413 request"):
        assert expected in log


def test_http_disconnect_reaches_the_app(starlette_server: Any) -> None:
    """A client that leaves while the app waits for it: the app's receive() returns
    http.disconnect (Starlette's request.is_disconnected() becomes true)."""
    base = http_base(starlette_server)
    before = httpx.get(f"{base}/seen").json()["http_disconnects"]
    with socket.create_connection((starlette_server.host, starlette_server.port), 10) as sock:
        sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/seen").json()["http_disconnects"] == before:
        assert time.monotonic() < deadline, "the app never saw http.disconnect"
        time.sleep(0.05)


def test_metrics_and_healthz_beside_the_app(starlette_server: Any) -> None:
    """/healthz and /metrics are answered on an ASGI app's port too, on a kept-alive
    connection, and count the app's HTTP requests."""
    with httpx.Client(base_url=http_base(starlette_server)) as client:
        assert json.loads(client.get("/healthz").text)["status"] == "ok"
        client.get("/")
        metrics = client.get("/metrics").text
    counted = re.search(r'^fastws_http_requests_total\{worker="0"\} (\d+)', metrics, re.M)
    assert counted is not None and int(counted[1]) >= 3, metrics  # /healthz, / and /metrics


def test_an_upgrade_pipelined_after_requests_waits_for_their_answers(starlette_server: Any) -> None:
    """Two plain requests and then a WebSocket upgrade in one write: the two answers come
    first, in order, then the 101, and the connection is a WebSocket from there on."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    first = b"GET /?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection((starlette_server.host, starlette_server.port), 10) as sock:
        sock.sendall(first + upgrade)
        received = b""
        while b"101 Switching Protocols" not in received or not received.endswith(b"\r\n\r\n"):
            received += sock.recv(65536)
        # A masked text frame "hi"; its echo comes back unmasked.
        sock.sendall(b"\x81\x82\x00\x00\x00\x00hi")
        echo = sock.recv(1024)
    assert received.index(b'"query":"n=1"') < received.index(b'"query":"n=2"')
    assert received.index(b'"query":"n=2"') < received.index(b"HTTP/1.1 101 Switching Protocols")
    assert echo == b"\x81\x02hi"


def test_response_edge_cases(start_server: Any) -> None:
    """A 204 goes out without the body the app gave it (and the connection stays usable);
    a response header with a line break in it is refused (500, one ERROR line), never sent."""
    server = start_server("tests.asgi.apps:raw_responses", interface="asgi")
    pair = b"GET /no-content HTTP/1.1\r\nHost: t\r\n\r\nGET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    received = raw_exchange(server, pair, until=b"0\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"must not be sent" not in received
    assert received.endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")  # chunked: no length given
    evil = raw_exchange(server, b"GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
    assert evil.startswith(b"HTTP/1.1 500 ")
    assert b"stolen" not in evil
    assert "ASGI application failed on GET /bad-header" in server.stderr()
