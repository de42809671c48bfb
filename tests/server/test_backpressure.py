"""Backpressure both ways: a peer that does not keep up costs the server bounded memory.

The bounds are memory (VmRSS of the server process), not time: without backpressure the
server would buffer everything a fast side produces, gigabytes within a second here.
"""

from __future__ import annotations

import socket
import time

from tests.apps import FLOOD_MESSAGE
from tests.conftest import ServerFactory
from tests.wire import OP_BINARY, WireClient, encode_frame

MiB = 1 << 20
#: Allowed growth of the server's RSS while a peer stalls: socket buffers, the queue, slack.
#: Unbounded buffering would exceed it many times over in the time the tests wait.
RSS_SLACK = 96 * MiB


def test_send_waits_while_client_does_not_read(start_server: ServerFactory) -> None:
    """A handler sending as fast as it can to a client that reads nothing is held back by
    `send` (write buffer above write_limit); the stream resumes intact once the client reads."""
    server = start_server(app="tests.apps:flood")
    with WireClient(server.port) as client:
        client.handshake()
        baseline = server.rss_bytes()
        time.sleep(1.5)  # long enough to buffer GiBs if send() did not wait
        grown = server.rss_bytes() - baseline
        assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB for a stalled client"
        for expected in range(20):
            opcode, payload = client.recv_message()
            assert opcode == OP_BINARY
            assert len(payload) == FLOOD_MESSAGE
            assert int.from_bytes(payload[:8], "big") == expected


def test_reading_pauses_while_receive_queue_is_full(start_server: ServerFactory) -> None:
    """A client sending to a handler that never calls recv() fills max_queue messages, then
    the server stops reading: the client's send blocks instead of the server's memory growing."""
    server = start_server(app="tests.apps:never_reads", max_queue=2)
    frame = encode_frame(OP_BINARY, b"\x00" * MiB)
    sent = 0
    with WireClient(server.port) as client:
        client.handshake()
        baseline = server.rss_bytes()
        client.sock.settimeout(1.0)
        try:
            while sent < 512 * MiB:
                client.sock.sendall(frame)
                sent += len(frame)
        except TimeoutError:
            pass
        grown = server.rss_bytes() - baseline
        assert sent < 512 * MiB, "the server kept reading 512 MiB nobody consumed"
        assert grown < RSS_SLACK, f"server RSS grew {grown / MiB:.0f} MiB"
    assert server.is_running()


def test_peer_reset_ends_a_handler_that_never_waits(start_server: ServerFactory) -> None:
    """A client that resets the connection while the handler sends in a tight loop: the next
    send raises ConnectionClosed instead of writing into a dead transport forever, so the
    worker's event loop stays free for other clients."""
    server = start_server(app="tests.apps:flood")
    for _ in range(3):
        with WireClient(server.port) as client:
            client.handshake()
            client.recv_message()
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        # Reset sent; the worker must still serve a new client at once.
    with WireClient(server.port) as client:
        client.handshake()
        _, payload = client.recv_message()
        assert int.from_bytes(payload[:8], "big") == 0
