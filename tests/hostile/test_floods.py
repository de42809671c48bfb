"""Floods: clients that send a lot, or read nothing, must cost the server bounded memory and
must not slow anyone else down (EchoProbe echoes throughout each attack).

Bounds are on the server's resident memory (summed over its processes): unbounded buffering
would exceed them many times over in the time each test runs. No test asserts a duration.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests.hostile.probe import EchoProbe, MiB, fd_count, settled_fd_count, wait_until
from tests.wire import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    TIMEOUT,
    WireClient,
    encode_frame,
)

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

#: Growth allowed while an attack runs: socket buffers, a few messages, allocator slack.
RSS_SLACK = 48 * MiB
#: A masking key of zeros leaves the payload as it is: building 100,000 frames stays cheap.
ZERO_KEY = b"\x00\x00\x00\x00"


def fragments(opcode: int, pieces: list[bytes]) -> bytes:
    """One message as len(pieces) frames, as raw bytes ready to send."""
    last = len(pieces) - 1
    return b"".join(
        encode_frame(opcode if i == 0 else OP_CONT, piece, fin=i == last, masking_key=ZERO_KEY)
        for i, piece in enumerate(pieces)
    )


def send_until_blocked(sock: socket.socket, data: bytes, limit: int, stall: float = 1.0) -> int:
    """Send `data` repeatedly until `limit` bytes or until a send makes no progress for
    `stall` seconds (the server stopped reading); return the bytes sent."""
    sock.settimeout(stall)
    sent = 0
    with contextlib.suppress(TimeoutError):
        while sent < limit:
            sock.sendall(data)
            sent += len(data)
    return sent


# ---------------------------------------------------------------------------------------------
# Ping floods (RFC 6455 5.5.2: every ping MUST get a pong, so a flood makes the server write)
# ---------------------------------------------------------------------------------------------


def test_ping_flood_from_a_client_that_never_reads_is_bounded(start_server: ServerFactory) -> None:
    """A client sends 125-byte pings as fast as it can and never reads the pongs: once the
    server's write buffer is over write_limit it stops reading from that client (its sends
    block) instead of queueing pongs without bound. Found unbounded before: +120 MiB in 8 s."""
    server = start_server(ping_interval="off")
    with EchoProbe(server) as probe, WireClient(server.port) as flooder:
        flooder.handshake()
        flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = server.rss_bytes()
        burst = encode_frame(OP_PING, b"p" * 125, masking_key=ZERO_KEY) * 2000
        sent = send_until_blocked(flooder.sock, burst, 512 * MiB)
        grown = server.rss_bytes() - before
    assert sent < 512 * MiB, "the server kept reading pings whose pongs nobody reads"
    assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB"
    print(f"ping flood: {sent / MiB:.1f} MiB of pings accepted, RSS +{grown / MiB:.1f} MiB; ")
    print(probe.summary())


def test_ping_flood_from_a_reading_client_gets_every_pong(start_server: ServerFactory) -> None:
    """20,000 pings from a client that does read are all answered, in order (5.5.2, 5.5.3)."""
    server = start_server(ping_interval="off")
    count = 20_000
    with WireClient(server.port) as client:
        client.handshake()
        client.send_raw(
            b"".join(
                encode_frame(OP_PING, i.to_bytes(4, "big"), masking_key=ZERO_KEY)
                for i in range(count)
            )
        )
        for i in range(count):
            frame = client.recv_frame()
            assert frame.payload == i.to_bytes(4, "big"), frame


# ---------------------------------------------------------------------------------------------
# A client that never reads what the server sends
# ---------------------------------------------------------------------------------------------


def test_client_that_never_reads_is_closed_after_write_timeout(
    start_server: ServerFactory,
) -> None:
    """--write-timeout: a handler sends 1 MiB messages without end to a client that reads
    nothing. The server's memory stays bounded (send() waits at write_limit) and once nothing
    has been read for write_timeout the connection is dropped (close code 1008 for the handler,
    one log line); other clients are unaffected."""
    server = start_server(app="tests.apps:flood", write_timeout=1.0)
    with WireClient(server.port) as reader:  # a client of the same app that does read
        reader.handshake()
        received: list[int] = []
        reading = threading.Thread(target=read_stream, args=(reader, received), daemon=True)
        reading.start()
        fds = settled_fd_count(server)
        with WireClient(server.port) as stalled:
            stalled.handshake()
            before = server.rss_bytes()
            server.wait_for_log("peer read nothing", timeout=TIMEOUT)
            grown = server.rss_bytes() - before
            # The server let go of the socket (reading the megabytes in flight would take long).
            wait_until(lambda: fd_count(server) <= fds, what="the server closing its socket")
        count = len(received)
        wait_until(lambda: len(received) > count + 10, what="the other client's stream going on")
        assert received == list(range(len(received))), "the other client's stream was broken"
        assert server.stderr().count("peer read nothing") == 1
    assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB"
    assert "closing 1008" in server.stderr()
    print(f"never-reading client: dropped after write_timeout, RSS +{grown / MiB:.1f} MiB")


def read_stream(client: WireClient, received: list[int]) -> None:
    """Read the flood app's numbered messages as they come, until the connection ends."""
    with contextlib.suppress(AssertionError, OSError):
        while True:
            opcode, payload = client.recv_message()
            assert opcode == OP_BINARY and len(payload) == MiB
            received.append(int.from_bytes(payload[:8], "big"))


def test_slow_but_reading_client_is_not_dropped(start_server: ServerFactory) -> None:
    """write_timeout is about a peer that reads nothing, not a slow one: a client reading
    64 KiB every 0.2 s keeps receiving the stream intact well past write_timeout."""
    server = start_server(app="tests.apps:flood", write_timeout=0.5)
    with WireClient(server.port) as slow:
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.handshake()
        deadline = time.monotonic() + 2.0  # four write_timeouts
        got = 0
        slow.sock.settimeout(TIMEOUT)
        while time.monotonic() < deadline:
            chunk = slow.sock.recv(65536)
            assert chunk, "the server closed a client that was reading"
            got += len(chunk)
            time.sleep(0.2)
    assert "peer read nothing" not in server.stderr()
    assert got > 0


# ---------------------------------------------------------------------------------------------
# Fragments (node ws had a memory-amplification bug from floods of tiny fragments)
# ---------------------------------------------------------------------------------------------


def test_100000_one_byte_fragments_accepted_100001_refused(start_server: ServerFactory) -> None:
    """Default --max-fragments (100,000) is inclusive: a binary message of 100,000 one-byte
    fragments is echoed; one more fragment fails the connection with 1009 at the fragment that
    crosses it. Memory stays bounded meanwhile, and others are served."""
    server = start_server()
    with EchoProbe(server) as probe:
        before = server.rss_bytes()
        with WireClient(server.port) as client:
            client.handshake()
            client.send_raw(fragments(OP_BINARY, [b"x"] * 100_000))
            assert client.recv_message() == (OP_BINARY, b"x" * 100_000)
            grown = server.rss_bytes() - before
        with WireClient(server.port) as client:
            client.handshake()
            message = fragments(OP_TEXT, [b"y"] * 100_002)
            client.send_raw(message[: len(message) - 7])  # the final fragment is never sent
            client.expect_close(1009)
    assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB"
    print(f"100,000 fragments: RSS +{grown / MiB:.1f} MiB; {probe.summary()}")


def test_conformance_suite_16mib_in_65536_fragments_accepted(start_server: ServerFactory) -> None:
    """Default limits accept what legitimate peers send: 16 MiB as 65,536 fragments of 256
    bytes (the size and count the conformance suite uses), echoed intact."""
    server = start_server()
    payload = bytes(range(256))
    with WireClient(server.port) as client:
        client.handshake()
        client.send_raw(fragments(OP_BINARY, [payload] * 65_536))
        assert client.recv_message() == (OP_BINARY, payload * 65_536)


def test_chromium_131000_byte_fragments_accepted(start_server: ServerFactory) -> None:
    """Chromium sends a 1 MiB message as 8 frames of 131,000 bytes and one of 576: echoed."""
    server = start_server()
    data = bytes(i % 251 for i in range(MiB))
    pieces = [data[i : i + 131_000] for i in range(0, MiB, 131_000)]
    assert len(pieces) == 9 and len(pieces[-1]) == 576
    with WireClient(server.port) as client:
        client.handshake()
        client.send_raw(fragments(OP_BINARY, pieces))
        assert client.recv_message() == (OP_BINARY, data)


# ---------------------------------------------------------------------------------------------
# Huge declared lengths on many connections
# ---------------------------------------------------------------------------------------------


def hold_declared_frames(server_port: int, count: int, declared: int) -> list[WireClient]:
    clients = []
    for _ in range(count):
        client = WireClient(server_port)
        clients.append(client)
        client.handshake()
        client.send_frame(OP_BINARY, b"", length_override=declared)
        client.send_raw(b"x")
    return clients


@pytest.mark.parametrize(
    "declared",
    [
        16 * MiB - 1,
        MiB - 1,  # under MMAP_MIN: mapped lazily too while most of it has not arrived
    ],
    ids=["16MiB-1", "1MiB-1"],
)
def test_declared_lengths_cost_memory_only_when_sent(
    start_server: ServerFactory, declared: int
) -> None:
    """200 connections each declare a large binary frame (under the 16 MiB limit) and send one
    byte of it: the server's memory grows by what was sent, not by what was declared."""
    server = start_server()
    with EchoProbe(server) as probe:
        before = server.rss_bytes()
        clients = hold_declared_frames(server.port, 200, declared)
        try:
            with WireClient(server.port) as last:  # a round trip: the server read them all
                last.handshake()
                last.echo()
            grown = server.rss_bytes() - before
        finally:
            for client in clients:
                client.close()
        wait_until(lambda: server.rss_bytes() - before < RSS_SLACK, what="memory released")
    print(f"200 x declared {declared} B: RSS +{grown / MiB:.1f} MiB; {probe.summary()}")
    assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB for 200 x 15 bytes"
