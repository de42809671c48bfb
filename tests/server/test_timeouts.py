"""Timeouts: slow/silent peers are dropped, live ones are kept (handshake, keepalive, close).

The servers here run with short configured timeouts (0.3-0.5 s); the tests only bound the wait
generously (`TIMEOUT`) so a server that never drops the peer fails instead of hanging. No test
asserts how fast anything happens.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING

import pytest
from websockets.protocol import State
from websockets.sync.client import connect

from tests.wire import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TIMEOUT,
    PeerClosed,
    WireClient,
    parse_close,
)

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

SHORT = 0.5  # configured timeouts, seconds


def assert_dropped(client: WireClient) -> None:
    """The server closes the connection (within TIMEOUT), saying nothing or an HTTP error."""
    data = client.recv_until_closed(TIMEOUT)
    if data:
        assert data.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 400 ")), data[:200]


def assert_good_client_echoes(server: ServerProcess) -> None:
    with connect(
        server.url, compression=None, proxy=None, open_timeout=TIMEOUT, ping_interval=None
    ) as ws:
        ws.send("meanwhile")
        assert ws.recv(timeout=TIMEOUT) == "meanwhile"


# ---------------------------------------------------------------------------------------------
# Opening handshake
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handshake_timeout_server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(handshake_timeout=SHORT)


def test_half_handshake_dropped(handshake_timeout_server: ServerProcess) -> None:
    """--handshake-timeout: a client that sends half a request and stalls is disconnected, and
    another client is served normally meanwhile."""
    with WireClient(handshake_timeout_server.port) as stalled:
        stalled.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web")
        assert_good_client_echoes(handshake_timeout_server)
        assert_dropped(stalled)
    assert_good_client_echoes(handshake_timeout_server)


def test_silent_connection_dropped(handshake_timeout_server: ServerProcess) -> None:
    """--handshake-timeout: a client that connects and sends nothing is disconnected."""
    with WireClient(handshake_timeout_server.port) as silent:
        assert_good_client_echoes(handshake_timeout_server)
        assert_dropped(silent)


def test_trickled_handshake_dropped(handshake_timeout_server: ServerProcess) -> None:
    """--handshake-timeout bounds the whole handshake, not the gap between reads: a client
    trickling a never-ending header one byte every 50 ms (slowloris) is still disconnected."""
    with WireClient(handshake_timeout_server.port) as slow:
        slow.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + TIMEOUT
        while True:
            readable, _, _ = select.select([slow.sock], [], [], 0.05)
            if readable:
                break
            assert time.monotonic() < deadline, "still connected after trickling for 5 s"
            try:
                slow.send_raw(b"a")
            except OSError:  # closed under us
                break
        assert_dropped(slow)


# ---------------------------------------------------------------------------------------------
# Keepalive pings
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keepalive_server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(ping_interval=0.3, ping_timeout=0.3, close_timeout=SHORT)


def test_keepalive_drops_client_that_never_pongs(keepalive_server: ServerProcess) -> None:
    """--ping-interval/--ping-timeout: the server pings (RFC 6455 5.5.2 keepalive); a client that
    never answers is disconnected, with close code 1011 if a close frame is sent."""
    with WireClient(keepalive_server.port) as mute:
        mute.handshake()
        frames = []
        deadline = time.monotonic() + TIMEOUT
        with pytest.raises(PeerClosed):
            while True:
                assert time.monotonic() < deadline, f"still connected after 5 s; got {frames}"
                frames.append(mute.recv_frame(timeout=TIMEOUT))
    opcodes = [f.opcode for f in frames]
    assert OP_PING in opcodes, f"no ping was sent: {frames}"
    assert set(opcodes) <= {OP_PING, OP_CLOSE}, frames
    closes = [f for f in frames if f.opcode == OP_CLOSE]
    assert len(closes) <= 1
    if closes:
        assert frames[-1] is closes[0], "frames after the close frame"
        assert parse_close(closes[0])[0] == 1011


@pytest.fixture(scope="module")
def lenient_keepalive_server(start_module_server: ServerFactory) -> ServerProcess:
    """Pings often, but gives the pong plenty of time: a loaded CI machine cannot make a live
    client look dead."""
    return start_module_server(ping_interval=0.2, ping_timeout=TIMEOUT / 2)


def test_keepalive_keeps_websockets_client(lenient_keepalive_server: ServerProcess) -> None:
    """A client that answers pings (the websockets library does, by itself) stays connected for
    several ping intervals and can still exchange messages."""
    with connect(
        lenient_keepalive_server.url,
        compression=None,
        proxy=None,
        open_timeout=TIMEOUT,
        ping_interval=None,
    ) as ws:
        time.sleep(1.0)  # five ping intervals
        assert ws.state is State.OPEN
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"


def test_keepalive_pings_answered_by_raw_client(lenient_keepalive_server: ServerProcess) -> None:
    """RFC 6455 5.5.2/5.5.3: the server's keepalive pings are unmasked control frames; a pong
    carrying the ping's payload satisfies them: after three answered pings the connection is
    still open and echoes."""
    with WireClient(lenient_keepalive_server.port) as ws:
        ws.handshake()
        for _ in range(3):
            frame = ws.recv_frame()
            assert frame.opcode == OP_PING, f"unexpected {frame}"
            ws.send_frame(OP_PONG, frame.payload)
        ws.send_frame(OP_TEXT, b"alive")
        assert ws.recv_message() == (OP_TEXT, b"alive")  # answers pings met meanwhile


# ---------------------------------------------------------------------------------------------
# Closing handshake
# ---------------------------------------------------------------------------------------------


def test_close_timeout_drops_peer_that_never_answers_close(start_server: ServerFactory) -> None:
    """--close-timeout: after a server-initiated close (RFC 6455 7.1.2) the server waits a
    bounded time for the client's close frame, then closes TCP anyway."""
    server = start_server("tests.apps:close_immediately", close_timeout=SHORT)
    with WireClient(server.port) as ws:
        ws.handshake()
        assert ws.recv_close() == (1000, "")
        ws.assert_server_closes_tcp(TIMEOUT)  # we never send our close
    assert_good_client_echoes_close(server)


def assert_good_client_echoes_close(server: ServerProcess) -> None:
    """A client that does answer gets the normal close too."""
    with WireClient(server.port) as ws:
        ws.handshake()
        assert ws.recv_close() == (1000, "")
        ws.send_close(1000)
        ws.assert_server_closes_tcp()


def test_connection_lost_with_a_keepalive_ping_in_flight_logs_nothing(
    start_server: ServerFactory,
) -> None:
    """Peers that vanish while a keepalive ping waits for its pong cost no log noise: the
    unawaited ping's failure is retrieved (no "Future exception was never retrieved"
    traceback per lost connection)."""
    server = start_server(ping_interval="100ms", ping_timeout="30s")
    for _ in range(5):
        with WireClient(server.port) as client:
            client.handshake()
            frame = client.recv_frame(timeout=5)  # the first keepalive ping; never answered
            assert frame.opcode == 0x9
    assert_good_client_echoes(server)
    time.sleep(0.3)
    assert "never retrieved" not in server.stderr(), server.stderr()
