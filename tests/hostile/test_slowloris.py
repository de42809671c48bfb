"""Slowloris: many connections that send a little, very slowly, to hold server resources.

Each attack runs against a real server process while `EchoProbe` (the websockets library)
echoes throughout: the property is that the attackers are dropped and the probe loses nothing.
The 1,000-socket, one-byte-per-second version is `bench/hostile.py slowloris`; here the count
and the timeouts are scaled down so the test takes seconds.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import TYPE_CHECKING

from tests.hostile.probe import EchoProbe, MiB, fd_count, settled_fd_count, wait_until
from tests.wire import OP_BINARY, TIMEOUT, WireClient, encode_frame

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

SOCKETS = 200
HANDSHAKE_TIMEOUT = 1.0
TRICKLE_EVERY = 0.2  # seconds between two bytes of one socket


def trickle_until_dropped(socks: list[socket.socket], deadline: float) -> float:
    """Send one more header byte on every socket each TRICKLE_EVERY seconds until the server
    has closed them all; return how long that took. Fails at `deadline`."""
    start = time.monotonic()
    alive = set(socks)
    while alive:
        assert time.monotonic() < deadline, f"{len(alive)} trickling sockets still connected"
        readable, _, _ = select.select(list(alive), [], [], TRICKLE_EVERY)
        for sock in readable:  # the server closed it (EOF, a reset, or an HTTP error first)
            with contextlib.suppress(OSError):
                while sock.recv(4096):
                    pass
            alive.discard(sock)
        for sock in list(alive):
            try:
                sock.send(b"a")
            except OSError:
                alive.discard(sock)
    return time.monotonic() - start


def test_handshake_slowloris_is_dropped_at_the_handshake_timeout(
    start_server: ServerFactory,
) -> None:
    """200 sockets trickling a never-ending request header (one byte per socket every 0.2 s)
    are all disconnected by --handshake-timeout, whatever they keep sending; a legitimate
    client echoes throughout, and the server's fds return to what they were."""
    server = start_server(handshake_timeout=HANDSHAKE_TIMEOUT)
    socks: list[socket.socket] = []
    try:
        with EchoProbe(server) as probe:
            fds_before, rss_before = settled_fd_count(server), server.rss_bytes()
            for _ in range(SOCKETS):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                sock.setblocking(False)
                socks.append(sock)
            wait_until(lambda: fd_count(server) >= fds_before + SOCKETS // 2, what="sockets held")
            held = fd_count(server) - fds_before
            took = trickle_until_dropped(socks, time.monotonic() + HANDSHAKE_TIMEOUT + TIMEOUT)
            wait_until(lambda: fd_count(server) <= fds_before, what="fds back to baseline")
            rss_after = server.rss_bytes()
    finally:
        for sock in socks:
            sock.close()
    print(
        f"slowloris: {SOCKETS} sockets, up to {held} fds held, all dropped {took:.1f} s later;"
        f" RSS {rss_before / MiB:.1f} -> {rss_after / MiB:.1f} MiB; {probe.summary()}"
    )


def test_frame_header_then_silence_is_reaped_by_keepalive(start_server: ServerFactory) -> None:
    """After a valid handshake, clients that send the header of a 64 KiB frame and a few of its
    bytes, then nothing (and read nothing), are disconnected by the keepalive: no pong within
    --ping-timeout. A legitimate client (which answers pings) echoes throughout."""
    server = start_server(ping_interval=0.3, ping_timeout=0.3, close_timeout=0.5)
    clients: list[WireClient] = []
    try:
        with EchoProbe(server) as probe:
            fds_before = settled_fd_count(server)
            for _ in range(20):
                client = WireClient(server.port)
                clients.append(client)
                client.handshake()
                frame = encode_frame(OP_BINARY, b"x" * 65536)
                client.send_raw(frame[:20])  # 14-byte header and 6 payload bytes
            deadline = time.monotonic() + TIMEOUT
            for client in clients:
                client.sock.settimeout(max(0.1, deadline - time.monotonic()))
                with contextlib.suppress(ConnectionResetError):
                    while client.sock.recv(65536):  # pings, then perhaps a close frame
                        pass
            wait_until(lambda: fd_count(server) <= fds_before, what="fds back to baseline")
    finally:
        for client in clients:
            client.close()
    assert "no pong to a keepalive ping" in server.stderr()
    print(f"frame slowloris: 20 stalled frames reaped by keepalive; {probe.summary()}")
