"""Malformed input: header bombs, random bytes after a valid handshake, vanished peers.

Each gets the RFC's answer (an HTTP status, a close code, or a dropped connection) and one log
line, never a crash: the server process is still serving the probe afterwards.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import TYPE_CHECKING

import pytest

from tests.hostile.probe import EchoProbe, fd_count, settled_fd_count, wait_until
from tests.wire import TIMEOUT, PeerClosed, WireClient, decode_frame, parse_close

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess


@pytest.fixture(scope="module")
def server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server()


def send_head_and_read_status(server: ServerProcess, head: bytes) -> int:
    """Send an opening-handshake head (possibly huge) and return the HTTP status answered."""
    with WireClient(server.port) as client:
        # The server may answer and close before it has read it all.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send_raw(head)
        try:
            return client.read_http_response().status
        except PeerClosed as exc:
            raise AssertionError("the server closed without an HTTP status") from exc


def test_ten_thousand_headers_get_431(server: ServerProcess) -> None:
    """10,000 header fields (limit --max-headers 128): 431 Request Header Fields Too Large
    (RFC 6585 5), and the server keeps serving."""
    with EchoProbe(server) as probe:
        with WireClient(server.port) as client:
            request = client.build_request(extra_headers=[(f"X-{i}", "v") for i in range(10_000)])
        assert send_head_and_read_status(server, request) == 431
    print(probe.summary())


@pytest.mark.parametrize("where", ["header", "request line"])
def test_one_mib_line_gets_431_or_414(server: ServerProcess, where: str) -> None:
    """A 1 MiB header line is refused with 431 (RFC 6585 5); a 1 MiB request line with 414 (RFC
    9112 3: "A server that receives a request-target longer than any URI it wishes to parse MUST
    respond with a 414"). Either way before the whole line has been read."""
    with EchoProbe(server) as probe:
        with WireClient(server.port) as client:
            if where == "header":
                request = client.build_request(headers={"X-Big": "a" * (1 << 20)})
            else:
                request = client.build_request(path="/" + "a" * (1 << 20))
        status = send_head_and_read_status(server, request)
        assert status == (431 if where == "header" else 414)
    print(probe.summary())


def test_random_bytes_after_a_valid_handshake(server: ServerProcess) -> None:
    """50 connections send 64 KiB of random bytes after a valid handshake: each is failed with
    a close code (or dropped) and the server process keeps serving the probe throughout."""
    rng = random.Random(6455)
    codes: dict[int | None, int] = {}
    with EchoProbe(server) as probe:
        for _ in range(50):
            with WireClient(server.port) as client:
                client.handshake()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    client.send_raw(rng.randbytes(65536))
                try:
                    data = client.recv_until_closed(TIMEOUT)
                except AssertionError:
                    # Random lengths may declare a frame still waiting for its payload: the
                    # server rightly waits. Make it give up: close our side.
                    data = b"waiting"
                code = None
                decoded = decode_frame(client.buffer + data) if data != b"waiting" else None
                if decoded is not None and decoded[0].opcode == 0x8:
                    code = parse_close(decoded[0])[0]
                codes[code] = codes.get(code, 0) + 1
    assert server.is_running()
    assert set(codes) <= {1002, 1007, 1009, None}, codes
    print(f"random bytes: close codes {codes}; {probe.summary()}")


def test_vanished_peer_is_reaped_by_keepalive(start_server: ServerFactory) -> None:
    """Half-open TCP: a peer that completes the handshake, then disappears without a FIN
    (simulated by a client that never sends or reads anything again; its kernel still ACKs),
    is disconnected when its keepalive ping gets no pong within --ping-timeout."""
    server = start_server(ping_interval=0.3, ping_timeout=0.3, close_timeout=0.3)
    with EchoProbe(server):
        fds = settled_fd_count(server)
        vanished = [WireClient(server.port) for _ in range(10)]
        try:
            for client in vanished:
                client.handshake()
            wait_until(lambda: fd_count(server) >= fds + 10, what="connections held")
            start = time.monotonic()
            wait_until(lambda: fd_count(server) <= fds, what="vanished peers reaped")
            took = time.monotonic() - start
        finally:
            for client in vanished:
                client.close()
    assert server.stderr().count("no pong to a keepalive ping") >= 10
    print(f"vanished peers: 10 reaped by keepalive {took:.1f} s after being held")
