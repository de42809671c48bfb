"""Happy paths against a real server process, driven by a client nobody here wrote.

The client is the `websockets` library (sync API; asyncio API for the concurrency test), with
compression off since fastws has no permessage-deflate yet. Where the library hides what is on
the wire (browser handshakes, the server's own pings) a raw socket from tests/wire.py is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from tests import apps
from tests.wire import OP_BINARY, OP_PING, OP_TEXT, TIMEOUT, WireClient, accept_key, make_key

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

MiB = 1 << 20


def connect(server: ServerProcess | str, **options: Any) -> ClientConnection:
    """websockets' sync client with test defaults: no compression, no proxy, no size limit, no
    client keepalive pings, and bounded waits."""
    url = server if isinstance(server, str) else server.url
    defaults: dict[str, Any] = {
        "compression": None,
        "proxy": None,
        "open_timeout": TIMEOUT,
        "close_timeout": TIMEOUT,
        "ping_interval": None,
        "max_size": None,
    }
    return sync_connect(url, **{**defaults, **options})


def recv(ws: ClientConnection) -> str | bytes:
    return ws.recv(timeout=TIMEOUT)


def assert_echoes(server: ServerProcess, message: str | bytes = "still serving") -> None:
    with connect(server) as ws:
        ws.send(message)
        assert recv(ws) == message


# ---------------------------------------------------------------------------------------------
# Startup
# ---------------------------------------------------------------------------------------------


def test_startup_logs_listening_address(echo_server: ServerProcess) -> None:
    """API contract: the server logs "fastws: listening on ws://HOST:PORT" to stderr."""
    echo_server.wait_for_log(f"fastws: listening on ws://127.0.0.1:{echo_server.port}")


# ---------------------------------------------------------------------------------------------
# Echo (RFC 6455 5.6 data frames, 5.2 payload length encodings)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world",
        "héllo wörld",  # 2-byte sequences
        "κόσμε ∑ € 中文",  # 2- and 3-byte sequences
        "𝄞 🎉 \U0010ffff",  # 4-byte sequences up to the last code point
        "\ufeff\uffff\x00\x7f",  # BOM, U+FFFF, NUL, DEL: valid, if odd
    ],
    ids=["empty", "ascii", "latin1", "bmp", "astral", "edge-code-points"],
)
def test_text_echo(echo_server: ServerProcess, text: str) -> None:
    """RFC 6455 5.6: a text message (UTF-8) comes back as the same text message."""
    with connect(echo_server) as ws:
        ws.send(text)
        assert recv(ws) == text


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537, MiB])
def test_binary_echo_sizes(echo_server: ServerProcess, size: int) -> None:
    """RFC 6455 5.2: payload lengths around the 7-bit / 16-bit / 64-bit encoding boundaries."""
    payload = os.urandom(size)
    with connect(echo_server) as ws:
        ws.send(payload)
        echoed = recv(ws)
    assert isinstance(echoed, bytes)
    assert len(echoed) == size
    assert echoed == payload


@pytest.mark.parametrize("size", [126, 65536, MiB + 3])
def test_text_echo_sizes(echo_server: ServerProcess, size: int) -> None:
    """RFC 6455 8.1: large texts made of 1- to 4-byte UTF-8 sequences (so that sequences
    straddle any internal chunk boundary of the server's validator) come back unchanged."""
    alphabet = "aé€𝄞"  # 1, 2, 3, 4 bytes
    text = (alphabet * (size // 10 + 1))[: size // 2 + 1]
    with connect(echo_server) as ws:
        ws.send(text)
        assert recv(ws) == text


def test_100mib_binary_echo(start_server: ServerFactory) -> None:
    """A 100 MiB binary message (a single 64-bit-length frame) comes back intact (sha256),
    with --max-message-size 128 MiB."""
    server = start_server(max_message_size=128 * MiB)
    payload = os.urandom(100 * MiB)
    digest = hashlib.sha256(payload).hexdigest()
    with connect(server, open_timeout=TIMEOUT) as ws:
        ws.send(payload)
        del payload
        echoed = ws.recv(timeout=60)
    assert isinstance(echoed, bytes)
    assert len(echoed) == 100 * MiB
    assert hashlib.sha256(echoed).hexdigest() == digest


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [
        ([b"ab", b"", b"cd", b"e" * 70000], b"abcd" + b"e" * 70000),
        (["hé", "llo ", "wörld", ""], "héllo wörld"),
    ],
    ids=["binary", "text"],
)
def test_fragmented_message_echoed_whole(
    echo_server: ServerProcess, fragments: list[Any], expected: str | bytes
) -> None:
    """RFC 6455 5.4: a message sent as several fragments (one of them empty) is delivered to the
    app as one message."""
    with connect(echo_server) as ws:
        ws.send(fragments)
        assert recv(ws) == expected


def test_many_messages_keep_order(echo_server: ServerProcess) -> None:
    """RFC 6455 5.4/6.1: 1,000 messages sent back to back (text and binary, 0 to 2 KiB) are
    echoed in order."""
    messages: list[str | bytes] = [
        f"message {i} ".ljust(i * 2 % 2048, "x") if i % 2 else os.urandom(i * 7 % 2048)
        for i in range(1000)
    ]
    with connect(echo_server, max_queue=None) as ws:
        for message in messages:
            ws.send(message)
        received = [recv(ws) for _ in messages]
    assert received == messages


# ---------------------------------------------------------------------------------------------
# Ping / pong (RFC 6455 5.5.2, 5.5.3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))], ids=["empty", "5", "125"])
def test_client_ping_gets_pong(echo_server: ServerProcess, payload: bytes) -> None:
    """RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
    response" (websockets matches the pong's payload to its ping), and the connection stays
    usable."""
    with connect(echo_server) as ws:
        assert ws.ping(payload).wait(TIMEOUT), "no pong"
        ws.send("after ping")
        assert recv(ws) == "after ping"


def test_server_ping_reaches_websockets_client(start_server: ServerFactory) -> None:
    """Handler API: ws.ping() sends a ping; the client's pong completes it and it returns the
    round-trip time in seconds."""
    server = start_server("tests.apps:ping_then_echo")
    with connect(server) as ws:
        report = json.loads(recv(ws))
        assert isinstance(report["rtt"], float)
        assert report["rtt"] >= 0
        ws.send("then echo")
        assert recv(ws) == "then echo"


def test_server_ping_on_the_wire(start_server: ServerFactory) -> None:
    """RFC 6455 5.5.2/5.5.3: the server's ping is an unmasked control frame carrying the payload
    the app gave; the pong (same payload) is what completes ws.ping()."""
    server = start_server("tests.apps:ping_then_echo")
    with WireClient(server.port) as client:
        client.handshake()
        frame = client.recv_frame()
        assert frame.opcode == OP_PING
        assert frame.payload == apps.PING_PAYLOAD
        client.send_frame(0xA, frame.payload)
        opcode, payload = client.recv_message()
        assert opcode == OP_TEXT
        assert "rtt" in json.loads(payload)
        client.echo(OP_BINARY, b"\x00\x01")


# ---------------------------------------------------------------------------------------------
# Subprotocols (RFC 6455 4.2.2 /subprotocol/, 11.3.4)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subprotocol_server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server("tests.apps:report_subprotocol", subprotocols=["chat", "superchat"])


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["superchat", "chat"], "chat"),  # both shared: the server's preference wins
        (["chat"], "chat"),
        (["superchat"], "superchat"),
        (None, None),  # none offered: connect without one
        (["other"], None),  # nothing shared: connect without one
    ],
)
def test_subprotocol_selection(
    subprotocol_server: ServerProcess, offered: list[str] | None, expected: str | None
) -> None:
    """RFC 6455 4.2.2: the server picks one of the client's subprotocols (its own order of
    preference, --subprotocols chat,superchat) or none, and ws.subprotocol agrees."""
    with connect(subprotocol_server, subprotocols=offered) as ws:
        assert ws.subprotocol == expected
        assert json.loads(recv(ws)) == expected
        if expected is None:
            # "it MUST NOT send back a |Sec-WebSocket-Protocol| header field in its response"
            assert "Sec-WebSocket-Protocol" not in ws.response.headers
        else:
            assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == [expected]


# ---------------------------------------------------------------------------------------------
# Closing (RFC 6455 5.5.1, 7.4)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_client_close_code_is_echoed(echo_server: ServerProcess, code: int) -> None:
    """RFC 6455 5.5.1: the server answers the client's close frame with a close frame echoing
    its status code (7.4.1 codes, 3000-4999 registered/private)."""
    with connect(echo_server) as ws:
        ws.send("hi")
        assert recv(ws) == "hi"
        ws.close(code, "client says bye")
        assert ws.protocol.close_rcvd is not None, "the server did not send a close frame"
        assert ws.protocol.close_rcvd.code == code


def test_handler_return_closes_1000(start_server: ServerFactory) -> None:
    """Handler API: a handler that returns closes the connection with 1000."""
    server = start_server("tests.apps:return_immediately")
    with connect(server) as ws, pytest.raises(ConnectionClosedOK) as closed:
        recv(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


def test_handler_exception_closes_1011_logs_and_server_survives(
    start_server: ServerFactory,
) -> None:
    """Handler API: a handler that raises makes the server close with 1011 (RFC 6455 7.4.1
    "unexpected condition") and log the exception; other connections, open or new, carry on.
    The exception's text does not leak to the client in the close reason."""
    server = start_server("tests.apps:raise_on_message")
    with connect(server) as bystander:
        bystander.send("before")
        assert recv(bystander) == "before"
        with connect(server) as ws:
            ws.send("raise")
            with pytest.raises(ConnectionClosedError) as closed:
                recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011
        assert apps.FAILURE_MARKER not in closed.value.rcvd.reason
        logs = server.wait_for_log(apps.FAILURE_MARKER)
        assert "RuntimeError" in logs
        bystander.send("after")
        assert recv(bystander) == "after"
    assert_echoes(server)


def test_handler_close_with_code_and_reason(start_server: ServerFactory) -> None:
    """Handler API: await ws.close(4000, "bye") reaches the client as close code 4000 "bye"."""
    server = start_server("tests.apps:close_4000_bye")
    with connect(server) as ws, pytest.raises(ConnectionClosed) as closed:
        recv(ws)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "bye")


# ---------------------------------------------------------------------------------------------
# Request details, hooks, origins
# ---------------------------------------------------------------------------------------------


def test_request_exposes_path_query_headers(start_server: ServerFactory) -> None:
    """Handler API: ws.request has the path (without the query), the query, and the headers
    (looked up case-insensitively: the app asks for X-FASTWS-TEST)."""
    server = start_server("tests.apps:report_request")
    url = server.url_for("/some/path?a=1&b=two%20words")
    with connect(url, additional_headers={"x-fastws-test": "hello there"}) as ws:
        report = json.loads(recv(ws))
    assert report["path"] == "/some/path"
    assert report["query"] in ("a=1&b=two%20words", "a=1&b=two+words")
    assert report["header"] == "hello there"


def test_remote_address_is_the_clients(start_server: ServerFactory) -> None:
    """Handler API: ws.remote_address is the client's (host, port)."""
    server = start_server("tests.apps:report_remote_address")
    with connect(server) as ws:
        host, port = json.loads(recv(ws))
        assert (host, port) == ws.local_address[:2]


@pytest.fixture(scope="module", params=["deny_unless_token", "deny_unless_token_async"])
def hook_server(start_module_server: ServerFactory, request: pytest.FixtureRequest) -> Any:
    return start_module_server(process_request=f"tests.apps:{request.param}")


def test_process_request_response_replaces_upgrade(hook_server: ServerProcess) -> None:
    """Hook contract: a Response returned by process_request (sync or async) is sent instead of
    the 101: the client sees HTTP 403 with the hook's body."""
    with pytest.raises(InvalidStatus) as rejected:
        connect(hook_server.url_for("/?token=nope"))
    assert rejected.value.response.status_code == 403
    assert rejected.value.response.body == b"forbidden"


def test_process_request_none_continues_handshake(hook_server: ServerProcess) -> None:
    """Hook contract: process_request returning None lets the handshake proceed."""
    with connect(hook_server.url_for("/?token=ok")) as ws:
        ws.send("let in")
        assert recv(ws) == "let in"


@pytest.fixture(scope="module")
def origin_server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(origins=["http://good.example"])


def test_allowed_origin_connects(origin_server: ServerProcess) -> None:
    """RFC 6455 4.2.2 / 10.2: an Origin in --origins is accepted."""
    with connect(origin_server, origin="http://good.example") as ws:
        ws.send("hi")
        assert recv(ws) == "hi"


def test_other_origin_gets_403(origin_server: ServerProcess) -> None:
    """RFC 6455 4.2.2 item 4 / 10.2: a server that checks origins answers 403 Forbidden to an
    Origin it does not accept."""
    with pytest.raises(InvalidStatus) as rejected:
        connect(origin_server, origin="http://evil.example")
    assert rejected.value.response.status_code == 403


# ---------------------------------------------------------------------------------------------
# Browsers
# ---------------------------------------------------------------------------------------------

BROWSER_HANDSHAKES = {
    "chromium": (
        "GET /chat HTTP/1.1\r\n"
        "Host: 127.0.0.1:{port}\r\n"
        "Connection: Upgrade\r\n"
        "Pragma: no-cache\r\n"
        "Cache-Control: no-cache\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36\r\n"
        "Upgrade: websocket\r\n"
        "Origin: http://localhost:3000\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        "Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "\r\n"
    ),
    "firefox": (
        "GET /chat HTTP/1.1\r\n"
        "Host: 127.0.0.1:{port}\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
        "Accept: */*\r\n"
        "Accept-Language: en-US,en;q=0.5\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: http://localhost:3000\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        "Sec-WebSocket-Key: {key}\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Sec-Fetch-Dest: empty\r\n"
        "Sec-Fetch-Mode: websocket\r\n"
        "Sec-Fetch-Site: same-site\r\n"
        "Pragma: no-cache\r\n"
        "Cache-Control: no-cache\r\n"
        "Upgrade: websocket\r\n"
        "\r\n"
    ),
}


@pytest.mark.parametrize("browser", sorted(BROWSER_HANDSHAKES))
def test_browser_handshake(echo_server: ServerProcess, browser: str) -> None:
    """RFC 6455 4.2.1/4.2.2: a handshake exactly as a browser sends it (extra headers, Firefox's
    "Connection: keep-alive, Upgrade", a permessage-deflate offer) gets a 101 with the right
    Sec-WebSocket-Accept and no Sec-WebSocket-Extensions (none is supported, so none may be
    accepted: 9.1), then frames flow."""
    key = make_key()
    with WireClient(echo_server.port) as client:
        client.send_raw(BROWSER_HANDSHAKES[browser].format(port=echo_server.port, key=key).encode())
        status, headers, _ = client.read_http_response()
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        assert "upgrade" in headers["connection"].lower()
        assert headers["sec-websocket-accept"] == accept_key(key)
        assert "sec-websocket-extensions" not in headers
        assert "sec-websocket-protocol" not in headers
        client.echo(OP_TEXT, "héllo".encode())
        client.echo(OP_BINARY, os.urandom(300))


# ---------------------------------------------------------------------------------------------
# Many clients, shutdown
# ---------------------------------------------------------------------------------------------


def test_concurrent_clients(echo_server: ServerProcess) -> None:
    """100 simultaneous connections (asyncio client) each get their own messages back."""

    async def client(i: int) -> None:
        async with async_connect(
            echo_server.url, compression=None, proxy=None, open_timeout=TIMEOUT
        ) as ws:
            for j in range(10):
                message = f"client {i} message {j}"
                await ws.send(message)
                assert await ws.recv() == message

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(100))), 30)

    asyncio.run(main())


def test_sigterm_closes_clients_1001_and_exits(start_server: ServerFactory) -> None:
    """API contract: SIGTERM stops the server gracefully: open connections get close code 1001
    (RFC 6455 7.4.1 "going away") and the process exits with status 0."""
    server = start_server()
    with connect(server) as ws:
        ws.send("hi")
        assert recv(ws) == "hi"
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert server.proc.wait(TIMEOUT) == 0
