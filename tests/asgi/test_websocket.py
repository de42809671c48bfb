"""ASGI WebSockets on fastws's own connections (fastws/asgi/websocket.py): Starlette and
FastAPI endpoints, driven by the `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.asgi.conftest import http_base


def ws_url(server: Any, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


def test_echo_text_and_large_binary(starlette_server: Any) -> None:
    """Text and binary messages both ways, up to 3 MiB (the mmap path, then a bytes copy)."""

    async def main() -> None:
        async with websockets.connect(ws_url(starlette_server, "/ws"), max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            payload = bytes(range(256)) * (3 * 4096)
            await ws.send(payload)
            assert await ws.recv() == payload

    asyncio.run(main())


def test_scope_subprotocol_and_accept_headers(starlette_server: Any) -> None:
    """The scope is complete (path, raw_path, query, scheme, headers, client, server,
    subprotocols, lifespan state, the extensions); the app's subprotocol and extra headers
    are in the 101; its close code and reason reach the client."""

    async def main() -> tuple[Any, Any, Any]:
        url = ws_url(starlette_server, "/scope?x=1&y=%20")
        async with websockets.connect(
            url, subprotocols=["chat", "superchat"], additional_headers={"X-Custom": "v"}
        ) as ws:
            scope = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
            return scope, ws.response, closed.value

    scope, response, closed = asyncio.run(main())
    assert scope["type"] == "websocket"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["scheme"] == "ws" and scope["http_version"] == "1.1"
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", starlette_server.port]
    assert ["x-custom", "v"] in scope["headers"]
    assert scope["greeting"] == "hello from lifespan"
    assert scope["extensions"] == ["fastws", "websocket.http.response"]
    assert response.headers["Sec-WebSocket-Protocol"] == "superchat"
    assert response.headers["x-chosen"] == "yes"
    assert closed.rcvd.code == 4321 and closed.rcvd.reason == "goodbye from the app"


def test_denial_response(starlette_server: Any) -> None:
    """Starlette's send_denial_response: the client gets the app's status, headers and body
    instead of 101 (the websocket.http.response extension)."""

    async def main() -> Any:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url(starlette_server, "/deny"))
        return refused.value.response

    response = asyncio.run(main())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Token"
    assert response.body == b"no entry\n"


def test_close_before_accept_is_403(starlette_server: Any) -> None:
    """websocket.close before websocket.accept: HTTP 403, as the ASGI spec says; an unknown
    WebSocket path (Starlette closes it) too."""

    async def status(path: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url(starlette_server, path))
        return refused.value.response.status_code

    assert asyncio.run(status("/close-before-accept")) == 403
    assert asyncio.run(status("/no-such-endpoint")) == 403


def test_disconnect_code_and_reason_reach_the_app(starlette_server: Any) -> None:
    """The client's close code and reason arrive in websocket.disconnect."""

    async def main() -> None:
        async with websockets.connect(ws_url(starlette_server, "/ws")) as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(4007, "client says bye")

    asyncio.run(main())
    base = http_base(starlette_server)
    deadline = time.monotonic() + 10
    while [4007, "client says bye"] not in httpx.get(f"{base}/seen").json()["disconnects"]:
        assert time.monotonic() < deadline, "no websocket.disconnect with 4007"
        time.sleep(0.05)


def test_fastapi_websocket_route_on_two_workers(fastapi_server: Any) -> None:
    """FastAPI's @app.websocket with a path parameter, on a two-worker server: several
    clients at once, each gets its own answers."""

    async def client(i: int) -> list[str]:
        async with websockets.connect(ws_url(fastapi_server, f"/ws/{i}")) as ws:
            answers = []
            for n in range(5):
                await ws.send(f"m{n}")
                answers.append(str(await ws.recv()))
            return answers

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(client(i) for i in range(8)))

    for i, answers in enumerate(asyncio.run(main())):
        assert answers == [f"#{i}: m{n}" for n in range(5)]


def test_fastws_limits_apply(start_server: Any) -> None:
    """fastws's own limits hold for an ASGI app's WebSocket: a message over
    max_message_size closes with 1009."""
    server = start_server("tests.asgi.apps:starlette_app", max_message_size=1000)

    async def main() -> Any:
        async with websockets.connect(ws_url(server, "/ws")) as ws:
            await ws.send(b"x" * 2000)
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
            return closed.value

    assert asyncio.run(main()).rcvd.code == 1009


def test_zero_copy_extension(starlette_server: Any) -> None:
    """An app that accepts with fastws.message gets large binary messages as memoryviews of
    the received message (no bytes copy) and can send them back as they are, releasing the
    memory with fastws.release; small ones stay bytes, text stays text."""

    async def main() -> list[Any]:
        async with websockets.connect(ws_url(starlette_server, "/zero-copy"), max_size=None) as ws:
            payload = b"\x01\x02" * (1024 * 1024)
            await ws.send(payload)
            got = [await ws.recv() for _ in range(3)]
            await ws.send(b"tiny")
            got.append(await ws.recv())
            await ws.send("text stays text")
            got.append(await ws.recv())
            return got

    kind, echoed, released, small, text = asyncio.run(main())
    assert kind == "memoryview 2097152"
    assert echoed == b"\x01\x02" * (1024 * 1024)
    assert released == "released True"
    assert small == "small bytes"
    assert text == "text stays text"


def test_channels_from_an_asgi_app(starlette_server: Any) -> None:
    """connection(websocket).subscribe() and fastws.publish(): a message published by one
    client (or by an HTTP route) reaches every subscriber of the room, and only them."""

    async def main() -> tuple[list[str], list[str], list[str]]:
        red1 = await websockets.connect(ws_url(starlette_server, "/room/red"))
        red2 = await websockets.connect(ws_url(starlette_server, "/room/red"))
        blue = await websockets.connect(ws_url(starlette_server, "/room/blue"))
        for ws in (red1, red2, blue):
            assert await ws.recv() == "joined"
        await red1.send("hello red")
        async with httpx.AsyncClient(base_url=http_base(starlette_server)) as client:
            await client.post("/publish/red", content=b"from http")
            await client.post("/publish/blue", content=b"blue only")
        got1 = [str(await red1.recv()) for _ in range(2)]
        got2 = [str(await red2.recv()) for _ in range(2)]
        got_blue = [str(await blue.recv())]
        for ws in (red1, red2, blue):
            await ws.close()
        return got1, got2, got_blue

    got1, got2, got_blue = asyncio.run(main())
    assert got1 == got2 == ["hello red", "from http"]
    assert got_blue == ["blue only"]


def test_backpressure_send_waits_for_a_slow_reader(starlette_server: Any) -> None:
    """A client that does not read: the app's send() stops returning (it waits instead of
    buffering 50 MiB), and goes on when the client reads; every message arrives."""
    base = http_base(starlette_server)

    async def main() -> tuple[int, int]:
        async with websockets.connect(
            ws_url(starlette_server, "/flood"), max_size=None, max_queue=1
        ) as ws:
            await asyncio.sleep(1.0)  # reading nothing meanwhile
            async with httpx.AsyncClient(base_url=base) as client:
                stalled = (await client.get("/seen")).json()["flood_sent"]
            received = 0
            async for message in ws:
                assert len(message) == 256 * 1024
                received += 1
            return stalled, received

    stalled, received = asyncio.run(asyncio.wait_for(main(), 60))
    assert stalled < 100, f"{stalled} of 200 sends returned while the client read nothing"
    assert received == 200


def test_a_send_after_the_client_left_is_not_an_error(start_server: Any) -> None:
    """An app that sends until its send fails (Starlette's WebSocketDisconnect, uncaught):
    the client leaving is the end of the connection, not an application failure: no error
    and no traceback in the log."""
    server = start_server("tests.asgi.apps:starlette_app")

    async def main() -> None:
        async with websockets.connect(ws_url(server, "/ticker")) as ws:
            assert await ws.recv() == "tick"
        await asyncio.sleep(0.3)  # the app's next sends find the connection closed

    asyncio.run(main())
    assert "ERROR" not in server.stderr()
    assert "Traceback" not in server.stderr()


def test_receive_after_a_cancelled_receive(starlette_server: Any) -> None:
    """An application that waits for messages with a timeout (asyncio.wait_for cancels its
    receive() each time it expires) still receives every message after it, in order, text
    and binary, small and large."""

    async def main() -> None:
        async with websockets.connect(ws_url(starlette_server, "/patient"), max_size=None) as ws:
            for message in ("first", b"\x00" * 100, "third", bytes(range(256)) * 8192):
                assert await ws.recv() == "timeout"  # a receive was cancelled before it
                await ws.send(message)
                assert await ws.recv() == message

    asyncio.run(main())
