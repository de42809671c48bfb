"""body_timeout (fastws/asgi/http.py): an HTTP request body that a client trickles, or stops
sending, is answered 408 and its connection closed; the server's own waits do not count.
Real server processes, raw sockets (the client must misbehave on the wire)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.asgi.conftest import STARLETTE, http_base

HEAD = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def test_trickled_body_is_answered_408_and_closed(start_server: Any) -> None:
    """A client that keeps sending its body one byte at a time, never finishing: 408 and
    the close after body_timeout (--body-timeout), one log line; meanwhile and afterwards
    other clients are served."""
    server = start_server(STARLETTE, body_timeout="1s")
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(HEAD + b"x" * 10)
        sock.settimeout(0.2)
        received = b""
        for _ in range(200):  # one byte every 0.2 s until the server answers
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                received = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(20)
        received += read_until_closed(sock)
        with httpx.Client(base_url=http_base(server)) as client:
            assert client.get("/").status_code == 200  # the worker serves on
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"connection: close" in received.lower()
    server.wait_for_log("408 request body incomplete after 1 s")


def test_stalled_body_is_answered_408_env_var(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends part of its body and then nothing: 408 and the close, with the
    timeout from FASTWS_BODY_TIMEOUT. The log line says how much had arrived."""
    monkeypatch.setenv("FASTWS_BODY_TIMEOUT", "500ms")
    server = start_server(STARLETTE)
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(HEAD + b"x" * 300)
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    server.wait_for_log("408 request body incomplete after 0.5 s (300 bytes received)")


def test_chunked_body_that_stops_is_answered_408(start_server: Any) -> None:
    """The same for a chunked body: chunks, then silence before the last chunk."""
    server = start_server(STARLETTE, body_timeout="500ms")
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]


def _post_after_100(server: Any, wait: str, delay: float) -> bytes:
    """POST a 5-byte body to /slow-upload?wait=WAIT with `Expect: 100-continue`: the body
    goes `delay` seconds after the server's 100; everything the server answers after it."""
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /slow-upload?wait=" + wait.encode() + b" HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        time.sleep(delay)
        sock.sendall(b"12345")
        return read_until_closed(sock)


def test_the_servers_own_waits_do_not_count(start_server: Any) -> None:
    """An application that reads its body only after longer than body_timeout: a large body
    (reading paused for the application) and an `Expect: 100-continue` body (the client
    waits for our 100, sent when the application asks) both arrive whole; a body sent at
    once never meets the timer. The client's period starts again when the server's wait
    ends (a margin of a whole second: the check must not depend on this machine's load)."""
    server = start_server(STARLETTE, body_timeout="1s", max_message_size="8MiB")
    body = b"y" * (4 << 20)
    with httpx.Client(base_url=http_base(server), timeout=30) as client:
        answer = client.post("/slow-upload", params={"wait": "2.5"}, content=body)
        assert answer.status_code == 200
        assert answer.json() == {"size": len(body)}
    received = _post_after_100(server, wait="2.5", delay=0)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    assert json.loads(received.partition(b"\r\n\r\n")[2]) == {"size": 5}
    assert "408" not in server.stderr()


def test_the_client_gets_a_whole_period_after_the_100(start_server: Any) -> None:
    """The period the client has for its body starts when the 100 Continue leaves, not
    where the server's own periods happened to be: the application asks after 3 s (the
    timer's periods end at 2 s and 4 s), the client answers the 100 after 1.5 s (after 4 s,
    within 2 s of the 100)."""
    server = start_server(STARLETTE, body_timeout="2s")
    received = _post_after_100(server, wait="3", delay=1.5)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    assert "408" not in server.stderr()


def test_off_means_no_timer(start_server: Any) -> None:
    """body_timeout off: no timer at all (not a zero one): a body that stalls keeps its
    connection, and the request completes when the rest arrives."""
    server = start_server(STARLETTE, body_timeout="off")
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(HEAD[:-4] + b"\r\nConnection: close\r\n\r\n" + b"x" * 10)
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):  # nothing comes back while the body is missing
            sock.recv(65536)
        sock.settimeout(20)
        sock.sendall(b"x" * 990)
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
    assert received.endswith(b"x" * 1000)
