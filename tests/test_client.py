"""fastws.connect against a server nobody here wrote, the `websockets` library's, and
against fastws' own server process.

Most tests run one event loop holding both the websockets server and the fastws client, on a
real loopback socket. Whatever the client gets wrong (masking, handshake key, framing) the
websockets server rejects, so the happy paths prove interoperability, not self-consistency.
The reconnection tests kill (SIGKILL) and restart real server processes, websockets' and
fastws', on a fixed port; the keepalive tests read the client's frames with websockets'
sans-I/O server.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import websockets.asyncio.client
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.server import ServerProtocol

import fastws
from fastws.client import InvalidHandshake, backoff, process_exception
from fastws.protocol.handshake import ClientResponse, Headers
from tests.conftest import REPO_ROOT, free_port

# The TLS fixtures (a CA made at test time, a wss:// fastws server) of the server's TLS tests.
from tests.server.test_tls import Certs, certs, client_context, tls_server  # noqa: F401

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

MiB = 1 << 20

Handler = Callable[[ServerConnection], Awaitable[None]]


async def ws_echo(conn: ServerConnection) -> None:
    async for message in conn:
        await conn.send(message)


@asynccontextmanager
async def websockets_server(handler: Handler = ws_echo, **options: Any) -> AsyncIterator[str]:
    """A websockets server on a free loopback port; yields its ws:// URL."""
    options.setdefault("max_size", 64 * MiB)
    options.setdefault("compression", None)
    async with ws_serve(handler, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 3 * MiB])
def test_binary_round_trip(size: int) -> None:
    """Masked binary frames of every length encoding are accepted and echoed intact."""

    async def main() -> None:
        payload = os.urandom(size)
        async with websockets_server() as url, fastws.connect(url) as ws:
            await ws.send(payload)
            echoed = await ws.recv()
        assert isinstance(echoed, bytes)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

    run(main())


@pytest.mark.parametrize("text", ["", "hello", "h\u00e9llo \u2603 \U0001f600", "x" * 70000])
def test_text_round_trip(text: str) -> None:
    """Text goes out as a text frame and comes back as str."""

    async def main() -> None:
        async with websockets_server() as url, fastws.connect(url) as ws:
            await ws.send(text)
            assert await ws.recv() == text

    run(main())


def test_fragmented_message_from_server_is_reassembled() -> None:
    """A message the server sends as several frames arrives as one message."""

    async def fragments(conn: ServerConnection) -> None:
        await conn.send(["frag", "ment", "ed"])
        await conn.send([b"\x00" * 70000, b"\x01" * 10])
        await conn.wait_closed()

    async def main() -> None:
        async with websockets_server(fragments) as url, fastws.connect(url) as ws:
            assert await ws.recv() == "fragmented"
            assert await ws.recv() == b"\x00" * 70000 + b"\x01" * 10

    run(main())


def test_send_fragments_reaches_server_as_one_message() -> None:
    """send_fragments produces continuation frames the server reassembles."""

    async def main() -> None:
        async with websockets_server() as url, fastws.connect(url) as ws:
            await ws.send_fragments(["a", "b", "c"])
            assert await ws.recv() == "abc"
            await ws.send_fragments([b"12", b"34"])
            assert await ws.recv() == b"1234"

    run(main())


def test_subprotocol_negotiated() -> None:
    """The client offers its list; the server's choice is exposed as ws.subprotocol."""

    async def main() -> None:
        offered = ["chat", "superchat"]
        async with (
            websockets_server(subprotocols=["superchat", "chat"]) as url,
            fastws.connect(url, subprotocols=offered) as ws,
        ):
            assert ws.subprotocol == "superchat"
        async with websockets_server() as url, fastws.connect(url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol is None  # offered, not supported: no header, no protocol

    run(main())


def test_request_path_query_and_headers_reach_server() -> None:
    """The path, query and extra headers are sent as given."""
    seen: dict[str, Any] = {}

    async def record(conn: ServerConnection) -> None:
        assert conn.request is not None
        seen["path"] = conn.request.path
        seen["header"] = conn.request.headers.get("X-Token")
        await conn.close()

    async def main() -> None:
        async with websockets_server(record) as url:
            ws = await fastws.connect(url + "/room/1?x=2", headers=[("X-Token", "abc")])
            await ws.wait_closed()

    run(main())
    assert seen == {"path": "/room/1?x=2", "header": "abc"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [(1000, fastws.ConnectionClosedOK), (4001, fastws.ConnectionClosedError)],
)
def test_server_close_code_and_reason_reach_client(
    code: int, expected: type[fastws.ConnectionClosed]
) -> None:
    """A server-initiated close is answered; its code and reason are exposed; 1000 is a
    normal end (ConnectionClosedOK), an application code is not."""

    async def closer(conn: ServerConnection) -> None:
        await conn.close(code, "done here")

    async def main() -> None:
        async with websockets_server(closer) as url:
            ws = await fastws.connect(url)
            with pytest.raises(expected):
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (code, "done here")

    run(main())


def test_client_close_code_reaches_server() -> None:
    """ws.close(code, reason) sends that code; the server sees a clean close."""
    seen: dict[str, Any] = {}

    async def wait(conn: ServerConnection) -> None:
        await conn.wait_closed()
        seen["code"], seen["reason"] = conn.close_code, conn.close_reason

    async def main() -> None:
        async with websockets_server(wait) as url:
            ws = await fastws.connect(url)
            await ws.close(3001, "bye")
            assert ws.close_code == 3001
            await asyncio.sleep(0.1)

    run(main())
    assert seen == {"code": 3001, "reason": "bye"}


def test_ping_returns_round_trip_time() -> None:
    """ping() completes when the server's pong arrives."""

    async def main() -> None:
        async with websockets_server() as url, fastws.connect(url) as ws:
            rtt = await ws.ping(b"abc")
            assert 0 <= rtt < 30

    run(main())


def test_rejected_handshake_raises_with_status() -> None:
    """A non-101 answer fails the connection with InvalidHandshake carrying the response."""

    def refuse(conn: ServerConnection, request: Any) -> WsResponse:
        return conn.respond(403, "go away\n")

    async def main() -> None:
        async with websockets_server(process_request=refuse) as url:
            with pytest.raises(InvalidHandshake) as info:
                await fastws.connect(url)
            assert info.value.response is not None
            assert info.value.response.status == 403

    run(main())


async def _raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    """A TCP server that reads a request head and writes `answer` verbatim."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize(
    "answer",
    [
        # RFC 6455 4.1: "If the |Sec-WebSocket-Accept| contains a value other than the
        # base64-encoded SHA-1 of the concatenation ... the client MUST _Fail_".
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
        # 4.1: a missing Upgrade header field must fail the connection.
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
        # Not HTTP.
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    ],
    ids=["bad-accept", "no-upgrade", "not-http"],
)
def test_bad_handshake_response_fails(answer: bytes) -> None:
    """The client checks the server's 101 and refuses a wrong one."""

    async def main() -> None:
        server, url = await _raw_server(answer)
        async with server:
            with pytest.raises(InvalidHandshake):
                await fastws.connect(url, open_timeout=5)

    run(main())


def test_refused_connection_raises_oserror() -> None:
    """Nothing listening: the OSError surfaces, no hang."""

    async def main() -> None:
        server, url = await _raw_server(b"")
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await fastws.connect(url, open_timeout=5)

    run(main())


# -- against fastws' own server ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 65536, 2 * MiB])
def test_echo_with_fastws_server(echo_server: ServerProcess, size: int) -> None:
    """Binary and text round trips against a real fastws server process."""

    async def main() -> None:
        payload = os.urandom(size)
        async with fastws.connect(echo_server.url, max_message_size=4 * MiB) as ws:
            await ws.send(payload)
            assert await ws.recv() == payload
            await ws.send("caf\u00e9")
            assert await ws.recv() == "caf\u00e9"

    run(main())


def test_compression_with_fastws_server(start_server: ServerFactory) -> None:
    """compression="deflate" is agreed with a fastws server started with compression on,
    and compressible messages survive the round trip."""
    server = start_server(compression="deflate")

    async def main() -> None:
        async with fastws.connect(server.url, compression="deflate") as ws:
            assert "permessage-deflate" in (
                ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            )
            await ws.send("x" * 10000)
            assert await ws.recv() == "x" * 10000

    run(main())


# -- headers, response, URI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Fastws-Test": "from-a-dict"}, "from-a-dict"),
        ([("X-Fastws-Test", "from-a-list")], "from-a-list"),
        (Headers([("X-Fastws-Test", "from-headers")]), "from-headers"),
    ],
    ids=["dict", "list", "Headers"],
)
def test_headers_as_dict_or_list_reach_fastws_server(
    start_server: ServerFactory, headers: Any, expected: str
) -> None:
    """headers= takes a dict, a list of pairs or Headers, like websockets' additional_headers."""
    server = start_server(app="tests.apps:report_request")

    async def main() -> str:
        async with fastws.connect(server.url_for("/p?q=1"), headers=headers) as ws:
            return json.loads(await ws.recv())["header"]

    assert run(main()) == expected


def test_repeated_headers_and_additional_headers_alias() -> None:
    """A list keeps repeated names (two fields of one name arrive as two); additional_headers= is the
    same option under websockets' name; passing both is an error."""
    seen: list[list[str]] = []

    async def record(conn: ServerConnection) -> None:
        assert conn.request is not None
        seen.append(conn.request.headers.get_all("X-Multi"))
        await conn.close()

    async def main() -> None:
        async with websockets_server(record) as url:
            ws = await fastws.connect(url, headers=[("X-Multi", "1"), ("X-Multi", "2")])
            await ws.wait_closed()
            ws = await fastws.connect(url, additional_headers={"X-Multi": "3"})
            await ws.wait_closed()
        with pytest.raises(TypeError, match="not both"):
            fastws.connect(url, headers={}, additional_headers={})

    run(main())
    assert seen == [["1", "2"], ["3"]]


def test_response_exposes_status_and_headers() -> None:
    """ws.response is the server's 101 (status, reason, headers), as in the sync client."""

    def add_header(conn: ServerConnection, request: Any, response: WsResponse) -> None:
        response.headers["X-Server-Id"] = "seven"

    async def main() -> None:
        async with (
            websockets_server(process_response=add_header) as url,
            fastws.connect(url) as ws,
        ):
            assert isinstance(ws.response, ClientResponse)
            assert ws.response.status == 101
            assert ws.response.headers["X-Server-Id"] == "seven"
            assert ws.response.headers["Upgrade"].lower() == "websocket"

    run(main())


def test_the_readme_client_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's client block, as written, against a websockets server: the echo with
    the "chat" subprotocol and the 101 printed, a connection with headers, then the
    reconnecting loop, which comes back each time the server closes, until its task is
    cancelled (after five; with wait_for around the handshake, Python 3.11 lost that
    cancellation when it landed as a connection completed, and the loop ran on)."""
    from tests.readme import blocks

    [source] = [code for code in blocks() if "async for ws in fastws.connect(url)" in code]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md:client", "exec"), namespace)
    seen: list[tuple[str | None, str | None]] = []
    looping = asyncio.Event()

    async def handler(conn: ServerConnection) -> None:
        seen.append((conn.subprotocol, conn.request.headers.get("Authorization")))
        if conn.subprotocol == "chat":
            await ws_echo(conn)
            return
        await conn.send(f"tick {len(seen)}")  # then close (1000): the loop reconnects
        if len(seen) >= 5:
            looping.set()

    async def main() -> None:
        def chat_if_offered(conn: ServerConnection, offered: Sequence[str]) -> str | None:
            return "chat" if "chat" in offered else None

        async with websockets_server(handler, select_subprotocol=chat_if_offered) as url:
            task = asyncio.ensure_future(namespace["main"](url))
            await asyncio.wait_for(looping.wait(), 30)
            task.cancel()  # stops the loop, even as a connection completes (asyncio.timeout)
            await asyncio.wait({task}, timeout=10)
            assert task.cancelled()

    run(main())
    assert seen[:2] == [("chat", None), (None, "Bearer t")]
    assert len(seen) >= 5
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "hello"
    assert printed[1].startswith("101 ") and "Upgrade" in printed[1]
    assert printed[2:5] == ["tick 3", "tick 4", "tick 5"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "127.0.0.1:8000", "ws://", "ws://h:99999/", "ws://h/#x"]
)
def test_invalid_uri_is_a_clear_error_at_once(url: str) -> None:
    """connect() with a URI that is not ws:// or wss:// raises InvalidURI naming it, when
    called (before any await, before any connection attempt, never retried)."""
    with pytest.raises(fastws.InvalidURI) as info:
        fastws.connect(url)
    assert info.value.uri == url and repr(url) in str(info.value)


# -- keepalive -----------------------------------------------------------------------------------


def test_keepalive_defaults_match_websockets() -> None:
    """Keepalive is on by default with websockets' values (ping every 20 s, 20 s for the
    pong), and the defaults reach the connection's options."""
    ours = inspect.signature(fastws.connect).parameters
    theirs = inspect.signature(websockets.asyncio.client.connect).parameters
    for name in ("ping_interval", "ping_timeout", "open_timeout"):
        assert ours[name].default == theirs[name].default, name
    options = fastws.connect("ws://127.0.0.1/").options
    assert (options["ping_interval"], options["ping_timeout"]) == (20.0, 20.0)


@asynccontextmanager
async def sansio_server(answer: bool) -> AsyncIterator[tuple[str, list[Frame]]]:
    """A server on websockets' sans-I/O ServerProtocol that records every frame the client
    sends. answer=False: it accepts the handshake, then never writes again (no pong)."""
    frames: list[Frame] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = ServerProtocol()
        try:
            while data := await reader.read(65536):
                protocol.receive_data(data)
                opened = False
                for event in protocol.events_received():
                    if isinstance(event, WsRequest):
                        protocol.send_response(protocol.accept(event))
                        opened = True
                    else:
                        frames.append(event)
                out = b"".join(protocol.data_to_send())
                if answer or opened:
                    writer.write(out)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", frames


def test_keepalive_pings_are_sent_and_answered() -> None:
    """With ping_interval set the client pings on its own; answered pongs keep it open."""

    async def main() -> None:
        async with (
            sansio_server(answer=True) as (url, frames),
            fastws.connect(url, ping_interval=0.05, ping_timeout=30) as ws,
        ):
            while sum(f.opcode is Opcode.PING for f in frames) < 3:
                await asyncio.sleep(0.02)
            assert not ws.closed

    run(main())


def test_keepalive_timeout_closes_1011() -> None:
    """No pong within ping_timeout: the client gives up on the connection with 1011, and its
    Close frame says so to the server (websockets does the same)."""

    async def main() -> None:
        async with sansio_server(answer=False) as (url, frames):
            ws = await fastws.connect(url, ping_interval=0.05, ping_timeout=0.1)
            await ws.wait_closed()
            assert ws.close_code == 1011
            with pytest.raises(fastws.ConnectionClosedError):
                await ws.recv()
            closes = [Close.parse(f.data) for f in frames if f.opcode is Opcode.CLOSE]
            assert closes and closes[0].code == 1011

    run(main())


# -- reconnecting --------------------------------------------------------------------------------


def fast_retries() -> Iterator[float]:
    return backoff(initial_delay=0.05, min_delay=0.05, max_delay=0.2, factor=2)


def test_backoff_delays() -> None:
    """RFC 6455 7.2.3: a random first delay, then exponential growth up to a cap that holds."""
    delays = backoff(initial_delay=5, min_delay=3.1, max_delay=90, factor=1.618)
    first = next(delays)
    assert 0 <= first <= 5
    rest = [next(delays) for _ in range(12)]
    assert rest[0] == 3.1
    growing, capped = rest[:8], rest[8:]
    assert all(b == pytest.approx(a * 1.618) for a, b in itertools.pairwise(growing))
    assert growing[-1] < 90 and capped == [90] * 4


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ConnectionRefusedError(), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (InvalidHandshake("closed during the handshake"), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
        (ValueError("a bug"), False),
    ],
)
def test_process_exception(exc: Exception, retried: bool) -> None:
    """Which errors the reconnect loop retries: network trouble yes; a refusal, a broken
    handshake, a certificate that does not verify, anything else no."""
    assert (process_exception(exc) is None) is retried
    if not retried:
        assert process_exception(exc) is exc


def test_handshake_cut_by_eof_is_retried() -> None:
    """A connection closed during the opening handshake (a server restarting) is retried."""
    exc = InvalidHandshake("connection closed during the opening handshake")
    exc.__cause__ = EOFError()
    assert process_exception(exc) is None


@pytest.mark.parametrize(
    ("status", "retried"), [(503, True), (502, True), (403, False), (404, False)]
)
def test_status_retried_or_raised(status: int, retried: bool) -> None:
    """A server answering 5xx for a while (500, 502, 503, 504) is retried until it accepts;
    any other refusal ends the loop at once with InvalidStatus, after a single attempt."""
    attempts: list[int] = []

    def refuse_twice(conn: ServerConnection, request: Any) -> WsResponse | None:
        attempts.append(status)
        if not retried or len(attempts) <= 2:
            return conn.respond(status, "not now\n")
        return None

    async def main() -> None:
        async with websockets_server(process_request=refuse_twice) as url:
            loop = fastws.connect(url, reconnect_delays=fast_retries)
            if not retried:
                with pytest.raises(fastws.InvalidStatus) as info:
                    async for _ in loop:
                        raise AssertionError("connected")
                assert info.value.response.status == status
                assert len(attempts) == 1
                return
            async for ws in loop:
                await ws.send("up")
                assert await ws.recv() == "up"
                await ws.close()
                break
            assert len(attempts) == 3

    run(main())


def test_broken_handshake_is_not_retried() -> None:
    """A 101 with a wrong Sec-WebSocket-Accept is the server's bug, not a passing state: the
    loop raises InvalidHandshake after one attempt."""
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
    )

    async def main() -> None:
        server, url = await _raw_server(answer)
        async with server:
            with pytest.raises(InvalidHandshake, match="Accept"):
                async for _ in fastws.connect(url, reconnect_delays=fast_retries):
                    raise AssertionError("connected")

    run(main())


def test_silent_server_times_out_and_is_retried() -> None:
    """A server that accepts TCP and never answers the upgrade: each attempt ends with
    TimeoutError after open_timeout, which the loop retries (here: stopped after the third by
    a process_exception that says so)."""
    seen: list[Exception] = []

    def record(exc: Exception) -> Exception | None:
        seen.append(exc)
        return exc if len(seen) == 3 else process_exception(exc)

    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with server:
            with pytest.raises(TimeoutError):
                async for _ in fastws.connect(
                    url, open_timeout=0.1, process_exception=record, reconnect_delays=fast_retries
                ):
                    raise AssertionError("connected")

    run(main())
    assert len(seen) == 3 and all(isinstance(exc, TimeoutError) for exc in seen)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_untrusted_certificate_is_not_retried(request: pytest.FixtureRequest) -> None:
    """wss:// to a fastws server whose certificate the client's CA did not sign: the loop
    raises SSLCertVerificationError after one attempt (an OSError, but no retry will fix it),
    while the right CA connects."""
    server: ServerProcess = request.getfixturevalue("tls_server")
    ca: Certs = request.getfixturevalue("certs")
    url = f"wss://127.0.0.1:{server.port}/"
    attempts: list[Exception] = []

    def record(exc: Exception) -> Exception | None:
        attempts.append(exc)
        return process_exception(exc)

    async def main() -> None:
        wrong = client_context(ca.other_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            async for _ in fastws.connect(url, ssl=wrong, process_exception=record):
                raise AssertionError("connected")
        assert len(attempts) == 1
        async for ws in fastws.connect(url, ssl=client_context(ca.ca)):
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
            await ws.close()
            break

    run(main())


WEBSOCKETS_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None) as server:
        await server.serve_forever()

asyncio.run(main())
"""


class RestartableServer:
    """A real server process on a fixed port that a test kills (SIGKILL: no close frames,
    like a crash) and starts again on the same port."""

    def __init__(self, kind: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        if kind == "fastws":
            self.cmd = [sys.executable, "-m", "fastws", "serve", "fastws.apps.echo:echo"]
            self.cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "0"]
        else:
            self.cmd = [sys.executable, "-c", WEBSOCKETS_ECHO, str(self.port)]
        self.log = log_dir / f"{kind}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=REPO_ROOT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:  # listening and answering (a 4xx to a plain GET is an answer)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    probe.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
                    if probe.recv(1):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.cmd} did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.mark.parametrize("kind", ["websockets", "fastws"])
def test_reconnects_after_server_killed_and_restarted(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """async for ws in connect(...): the server process dies (SIGKILL), recv raises
    ConnectionClosedError (1006), `continue` asks for a new connection; refused attempts are
    retried with back-off (logged) until the restarted server accepts; the loop goes on."""
    server = RestartableServer(kind, tmp_path)
    server.start()
    failures: list[Exception] = []
    codes: list[int] = []
    answers: list[str | bytes] = []

    async def main() -> None:
        failed = asyncio.Event()

        def record(exc: Exception) -> Exception | None:
            failures.append(exc)
            failed.set()
            return process_exception(exc)

        async def restart_once_refused() -> None:
            await failed.wait()
            await asyncio.to_thread(server.start)

        restart: asyncio.Task[None] | None = None
        async for ws in fastws.connect(
            server.url, process_exception=record, reconnect_delays=fast_retries
        ):
            try:
                await ws.send(f"hello {len(answers)}")
                answers.append(await ws.recv())
                if len(answers) == 2:
                    await ws.close()
                    break
                await asyncio.to_thread(server.kill)
                await ws.recv()
            except fastws.ConnectionClosedError as exc:
                codes.append(exc.code)
                restart = asyncio.create_task(restart_once_refused())
                continue
        assert restart is not None  # the loop went through a refused reconnect
        await restart  # server.start() may still be polling for readiness: not a failure

    try:
        with caplog.at_level(logging.INFO, logger="fastws.client"):
            run(main())
    finally:
        server.kill()
    assert answers == ["hello 0", "hello 1"]
    assert codes == [1006]
    assert failures and all(isinstance(exc, OSError) for exc in failures)
    assert sum("reconnecting in" in r.getMessage() for r in caplog.records) == len(failures)
