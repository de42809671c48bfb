"""fastws.connect against a server nobody here wrote: the `websockets` library's asyncio server.

Each test runs one event loop holding both the websockets server and the fastws client, on a
real loopback socket. Whatever the client gets wrong (masking, handshake key, framing) the
websockets server rejects, so the happy paths prove interoperability, not self-consistency.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Response as WsResponse

import fastws
from fastws.client import InvalidHandshake

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
