"""fastws.sync, the blocking client, against a real fastws server process and against the
`websockets` library's server (a server nobody here wrote, run in a thread of this process).

gevent is never imported here (it would patch pytest's process); the one test of the client
under gevent runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

from fastws.protocol.connection import State
from fastws.sync import (
    ClientConnection,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    connect,
)

# The TLS fixtures (a CA made at test time, a wss:// fastws server) of the server's TLS tests.
from tests.server.test_tls import Certs, certs, client_context, tls_server  # noqa: F401

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

TIMEOUT = 10.0
MiB = 1 << 20
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def open_ws(url: str, **options: Any) -> ClientConnection:
    return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **options)


# -- the websockets library's server ------------------------------------------------------------


class PeerServer:
    """A `websockets` sync server in a thread; records how each connection was closed."""

    def __init__(self, **options: Any) -> None:
        self.close_codes: list[int | None] = []
        self.closed = threading.Event()
        options.setdefault("compression", None)
        self.server = ws_serve(self.handler, "127.0.0.1", 0, **options)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        try:
            if path == "/close-1011":
                ws.close(1011, "server failure")
                return
            if path == "/push":
                for i in range(3):
                    ws.send(f"push {i}")
            for message in ws:
                ws.send(message)
        finally:
            self.close_codes.append(ws.close_code)
            self.closed.set()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(TIMEOUT)


@pytest.fixture
def peer() -> Iterator[PeerServer]:
    server = PeerServer(max_size=None)
    try:
        yield server
    finally:
        server.stop()


# -- both servers --------------------------------------------------------------------------------


@pytest.fixture(params=["fastws", "websockets"])
def echo_url(request: pytest.FixtureRequest, echo_server: ServerProcess) -> Iterator[str]:
    """An echo server's URL: fastws' own, then the websockets library's."""
    if request.param == "fastws":
        yield echo_server.url
    else:
        server = PeerServer(max_size=None)
        try:
            yield server.url
        finally:
            server.stop()


@pytest.mark.parametrize(
    "message",
    ["", "hello", "é∂🙂" * 1000, b"", b"\x00\xff" * 10, os.urandom(70_000), os.urandom(MiB + 3)],
    ids=["empty-text", "text", "utf8-4KiB", "empty-binary", "binary", "binary-70KB", "1MiB"],
)
def test_echo_round_trip(echo_url: str, message: str | bytes) -> None:
    """Text comes back as str and binary as bytes, byte for byte, from 0 B to over 1 MiB
    (the large payload goes through the direct-read path of the protocol core)."""
    with open_ws(echo_url) as ws:
        ws.send(message)
        assert ws.recv(timeout=TIMEOUT) == message


def test_many_messages_in_order(echo_url: str) -> None:
    """Messages sent back to back before reading any reply all come back, in order; replies
    that share one TCP read are all delivered."""
    with open_ws(echo_url) as ws:
        for i in range(200):
            ws.send(f"message {i}")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(200)] == [
            f"message {i}" for i in range(200)
        ]


def test_ping_measures_round_trip(echo_url: str) -> None:
    """ping() returns the pong's round trip; messages that arrive meanwhile stay for recv()."""
    with open_ws(echo_url) as ws:
        ws.send("before the ping")
        rtt = ws.ping(timeout=TIMEOUT)
        assert 0 < rtt < TIMEOUT
        assert ws.recv(timeout=TIMEOUT) == "before the ping"


def test_ping_while_another_thread_reads(echo_url: str) -> None:
    """A ping made while another thread is blocked in recv() is resolved by that reader."""
    with open_ws(echo_url) as ws:
        received: list[str | bytes] = []
        reader = threading.Thread(target=lambda: received.append(ws.recv(timeout=TIMEOUT)))
        reader.start()
        time.sleep(0.1)  # let the reader block in recv(); correctness does not depend on it
        assert ws.ping(timeout=TIMEOUT) > 0
        ws.send("wake the reader")
        reader.join(TIMEOUT)
        assert received == ["wake the reader"]


def test_recv_timeout_leaves_connection_usable(echo_url: str) -> None:
    """recv(timeout) raises TimeoutError when nothing comes, and the connection still works."""
    with open_ws(echo_url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send("after the timeout")
        assert ws.recv(timeout=TIMEOUT) == "after the timeout"


def test_iteration_and_send_after_close(echo_url: str) -> None:
    """close() completes the closing handshake; sending afterwards raises ConnectionClosedOK."""
    ws = open_ws(echo_url)
    ws.send("one")
    assert next(iter(ws)) == "one"
    ws.close()
    assert ws.closed and ws.state is State.CLOSED
    assert ws.close_code == 1000 and not ws.closed_by_peer
    with pytest.raises(ConnectionClosedOK):
        ws.send("too late")
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=TIMEOUT)


# -- fastws server specifics ---------------------------------------------------------------------


def test_subprotocol_negotiated(start_server: ServerFactory) -> None:
    """The server picks the first of its subprotocols the client offers; the client exposes it."""
    server = start_server(app="tests.apps:report_subprotocol", subprotocols=["chat", "superchat"])
    with open_ws(server.url, subprotocols=["superchat", "other"]) as ws:
        assert ws.subprotocol == "superchat"
        assert json.loads(ws.recv(timeout=TIMEOUT)) == "superchat"
    with open_ws(server.url) as ws:
        assert ws.subprotocol is None


def test_refused_handshake_raises_with_status(start_server: ServerFactory) -> None:
    """A refused upgrade raises InvalidHandshake carrying the HTTP status; headers are sent."""
    server = start_server(process_request="tests.apps:deny_unless_token")
    with pytest.raises(InvalidHandshake) as info:
        open_ws(server.url)
    assert info.value.response is not None and info.value.response.status == 403
    assert "403" in str(info.value)
    with open_ws(server.url_for("/?token=ok"), headers=[("X-Fastws-Test", "1")]) as ws:
        ws.send("let in")
        assert ws.recv(timeout=TIMEOUT) == "let in"


def test_refusal_is_invalid_status_and_response_is_kept(peer: PeerServer) -> None:
    """A refusal is InvalidStatus (an InvalidHandshake) with the status; an accepted
    connection keeps the server's 101 in ws.response, as the asyncio client does."""
    server = start_peer_refusing(503)
    try:
        with pytest.raises(InvalidStatus) as info:
            open_ws(server.url)
        assert info.value.response.status == 503
    finally:
        server.stop()
    with open_ws(peer.url) as ws:
        assert ws.response.status == 101
        assert ws.response.headers["Upgrade"].lower() == "websocket"


def start_peer_refusing(status: int) -> PeerServer:
    return PeerServer(process_request=lambda conn, request: conn.respond(status, "busy\n"))


@pytest.mark.parametrize(
    "headers",
    [{"X-Fastws-Test": "dict"}, [("X-Fastws-Test", "list")]],
    ids=["dict", "list"],
)
def test_headers_dict_or_list(start_server: ServerFactory, headers: Any) -> None:
    """headers= takes a dict or a list of (name, value) pairs; the server sees the header."""
    server = start_server(app="tests.apps:report_request")
    with open_ws(server.url, headers=headers) as ws:
        value = dict(headers.items() if isinstance(headers, dict) else headers)["X-Fastws-Test"]
        assert json.loads(ws.recv(timeout=TIMEOUT))["header"] == value


def test_additional_headers_alias(start_server: ServerFactory) -> None:
    """additional_headers= is headers= under the websockets library's name, as fastws.connect
    takes it; passing both is an error before any connection attempt."""
    server = start_server(app="tests.apps:report_request")
    with open_ws(server.url, additional_headers={"X-Fastws-Test": "alias"}) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["header"] == "alias"
    with pytest.raises(TypeError, match="not both"):
        open_ws(server.url, headers={"A": "1"}, additional_headers={"B": "2"})


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "ws://", "ws://127.0.0.1:70000/"])
def test_invalid_uri_names_it(url: str) -> None:
    """A URL that is not a usable ws:// or wss:// URI raises InvalidURI naming it, before any
    connection attempt."""
    with pytest.raises(InvalidURI) as info:
        open_ws(url)
    assert info.value.uri == url and repr(url) in str(info.value)


def test_connection_refused_raises_oserror() -> None:
    """Nobody listening: the OSError from TCP is raised as it is, not hidden."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connect is refused
        with pytest.raises(ConnectionRefusedError):
            open_ws(f"ws://127.0.0.1:{port}/")


def test_server_close_code_and_reason(start_server: ServerFactory) -> None:
    """A server-initiated close with 4000 "bye" raises ConnectionClosedError with both."""
    server = start_server(app="tests.apps:close_4000_bye")
    ws = open_ws(server.url)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=TIMEOUT)
    assert (info.value.code, info.value.reason) == (4000, "bye")
    assert ws.closed_by_peer and ws.closed


def test_handler_error_closes_1011(start_server: ServerFactory) -> None:
    """When the server's handler fails, the client sees 1011, and iteration raises it."""
    server = start_server(app="tests.apps:raise_on_message")
    ws = open_ws(server.url)
    ws.send("echo me")
    ws.send("raise")
    with pytest.raises(ConnectionClosedError) as info:
        assert list(ws) == ["echo me"]
    assert info.value.code == 1011


def test_normal_server_close_ends_iteration(start_server: ServerFactory) -> None:
    """A 1000 close from the server ends `for message in ws` without an exception."""
    server = start_server(app="tests.apps:close_immediately")
    with open_ws(server.url) as ws:
        assert list(ws) == []
        assert ws.close_code == 1000 and ws.closed_by_peer


def test_source_address(start_server: ServerFactory) -> None:
    """source_address picks the local end: 127.0.0.x spreads load tests over addresses."""
    server = start_server(app="tests.apps:report_remote_address")
    with open_ws(server.url, source_address=("127.0.0.7", 0)) as ws:
        assert ws.local_address[0] == "127.0.0.7"
        assert json.loads(ws.recv(timeout=TIMEOUT))[0] == "127.0.0.7"


COMPRESSIBLE = "the same words again and again " * 40_000  # ~1.2 MB of text


def test_compression_with_fastws(start_server: ServerFactory) -> None:
    """compression="deflate" is agreed with a fastws server that enables it; text and binary
    messages (1 MB compressible, random bytes) round-trip exactly."""
    server = start_server(compression="deflate")
    with open_ws(server.url, compression="deflate") as ws:
        assert ws.compressed
        for message in (COMPRESSIBLE, COMPRESSIBLE.encode(), os.urandom(100_000), "short"):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


def test_compression_declined_by_server(echo_server: ServerProcess) -> None:
    """A server that leaves the offer unanswered (fastws' default) gives an uncompressed
    connection that works."""
    with open_ws(echo_server.url, compression="deflate") as ws:
        assert not ws.compressed
        ws.send(COMPRESSIBLE)
        assert ws.recv(timeout=TIMEOUT) == COMPRESSIBLE


def test_compression_with_websockets() -> None:
    """The websockets library's server (deflate by default) agrees, and compressed messages
    round-trip both ways."""
    server = PeerServer(compression="deflate", max_size=None)
    try:
        with open_ws(server.url, compression="deflate") as ws:
            assert ws.compressed
            for message in (COMPRESSIBLE, COMPRESSIBLE.encode(), os.urandom(100_000)):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
    finally:
        server.stop()


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@needs_openssl
def test_wss_with_verified_certificate(request: pytest.FixtureRequest) -> None:
    """wss:// with a CA-verified certificate: small and 1 MiB messages, and recv(timeout) when
    replies sit decrypted inside the TLS layer (several per TLS record)."""
    server: ServerProcess = request.getfixturevalue("tls_server")
    ca: Certs = request.getfixturevalue("certs")
    url = f"wss://127.0.0.1:{server.port}/"
    with open_ws(url, ssl=client_context(ca.ca)) as ws:
        big = os.urandom(MiB)
        ws.send(big)
        assert ws.recv(timeout=TIMEOUT) == big
        for i in range(50):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(50)] == [f"m{i}" for i in range(50)]


@needs_openssl
def test_wss_refuses_unknown_certificate(request: pytest.FixtureRequest) -> None:
    """A certificate from a CA the client does not trust fails the connection."""
    server: ServerProcess = request.getfixturevalue("tls_server")
    ca: Certs = request.getfixturevalue("certs")
    url = f"wss://127.0.0.1:{server.port}/"
    with pytest.raises(ssl.SSLCertVerificationError):
        open_ws(url, ssl=client_context(ca.other_ca))


# -- websockets server specifics -----------------------------------------------------------------


def test_client_close_reaches_peer(peer: PeerServer) -> None:
    """close() sends 1000, the peer's handler sees it and ends; both sides agree on the code."""
    ws = open_ws(peer.url)
    ws.send("x")
    assert ws.recv(timeout=TIMEOUT) == "x"
    ws.close()
    assert peer.closed.wait(TIMEOUT)
    assert peer.close_codes == [1000]


def test_peer_close_1011(peer: PeerServer) -> None:
    """The peer's 1011 and reason surface as ConnectionClosedError."""
    ws = open_ws(peer.url + "close-1011")
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=TIMEOUT)
    assert (info.value.code, info.value.reason) == (1011, "server failure")


def test_messages_pushed_by_server(peer: PeerServer) -> None:
    """Messages the server sends on its own, even right behind its 101, are all received."""
    with open_ws(peer.url + "push") as ws:
        assert [ws.recv(timeout=TIMEOUT) for _ in range(3)] == ["push 0", "push 1", "push 2"]


def test_answers_server_keepalive_pings() -> None:
    """The client answers the peer's pings while it reads: a server with a 0.1 s ping interval
    and timeout keeps the connection open for many intervals."""
    server = PeerServer(ping_interval=0.1, ping_timeout=0.1)
    try:
        with open_ws(server.url) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.0)  # ~10 pings answered meanwhile
            ws.send("still open")
            assert ws.recv(timeout=TIMEOUT) == "still open"
    finally:
        server.stop()


# -- under gevent --------------------------------------------------------------------------------

GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, gevent
from fastws.sync import connect
url = sys.argv[1]
waiting = connect(url, open_timeout=10)
other = connect(url, open_timeout=10)
result = []
def blocked_reader():
    try:
        result.append(waiting.recv(timeout=10))
    except TimeoutError:
        result.append("timed out: recv blocked the whole process")
def other_user():
    for i in range(20):
        other.send(f"echo {i}")
        assert other.recv(timeout=10) == f"echo {i}"
    waiting.send("woken by the other greenlet")
gevent.joinall([gevent.spawn(blocked_reader), gevent.spawn(other_user)], raise_error=True)
print(result[0])
"""


def test_cooperative_under_gevent(echo_server: ServerProcess) -> None:
    """Monkey-patched by gevent, a greenlet blocked in recv() lets another greenlet run: the
    other one does 20 echoes on its own connection, then wakes the first by sending to it."""
    proc = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, echo_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "woken by the other greenlet"


def test_importing_fastws_does_not_import_locust_or_gevent() -> None:
    """locust stays optional: `import fastws` and `fastws.sync` load neither locust nor gevent
    (gevent's monkey-patching would change the behaviour of the whole process)."""
    code = "import sys, fastws, fastws.sync; print(sorted({'locust', 'gevent'} & set(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
