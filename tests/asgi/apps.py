"""ASGI applications the tests serve with `fastws serve tests.asgi.apps:NAME`: a Starlette
app and a FastAPI app, written as their users write them (nothing fastws-specific except
where a test is about a fastws extension)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

import fastws
from fastws.asgi import connection

#: What the WebSocket endpoints saw the client close with, for /seen to report (one worker).
seen: dict[str, Any] = {"disconnects": [], "http_disconnects": 0, "flood_sent": 0}


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    record = os.environ.get("ASGI_TEST_LIFESPAN_LOG")  # where a test wants to see it run
    if record:
        with open(record, "a") as file:
            file.write(f"startup {os.getpid()}\n")
    yield {"greeting": "hello from lifespan", "started": 1}
    if record:
        with open(record, "a") as file:
            file.write(f"shutdown {os.getpid()}\n")


# -- Starlette ---------------------------------------------------------------------------------


async def home(request: Any) -> Response:
    return JSONResponse(
        {
            "greeting": request.state.greeting,
            "path": request.url.path,
            "query": request.url.query,
            "scheme": request.url.scheme,
        }
    )


async def upload(request: Any) -> Response:
    size = 0
    pieces = 0
    async for chunk in request.stream():
        size += len(chunk)
        pieces += 1
    return JSONResponse({"size": size, "pieces": pieces})


async def slow_upload(request: Any) -> Response:
    """Reads its body only after `?wait=` seconds (a busy application)."""
    await asyncio.sleep(float(request.query_params.get("wait", "0")))
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"size": size})


async def echo_body(request: Any) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def stream(request: Any) -> Response:
    count = int(request.query_params.get("n", "3"))

    async def parts() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(parts(), media_type="text/plain")


async def wait_disconnect(request: Any) -> Response:
    """Waits until the client goes (http.disconnect), and counts it."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.01)
    seen["http_disconnects"] += 1
    return Response(b"")


async def seen_route(request: Any) -> Response:
    return JSONResponse(seen)


async def ws_echo(websocket: StarletteWebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            seen["disconnects"].append([message["code"], message.get("reason", "")])
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def ws_scope(websocket: StarletteWebSocket) -> None:
    """Accepts with the client's last subprotocol and a header; sends back its scope."""
    offered = websocket.scope["subprotocols"]
    await websocket.accept(
        subprotocol=offered[-1] if offered else None, headers=[(b"x-chosen", b"yes")]
    )
    scope = websocket.scope
    await websocket.send_json(
        {
            "type": scope["type"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "query_string": scope["query_string"].decode(),
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "subprotocols": scope["subprotocols"],
            "client": list(scope["client"]),
            "server": list(scope["server"]),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "greeting": websocket.state.greeting,
            "extensions": sorted(scope["extensions"]),
        }
    )
    await websocket.close(4321, "goodbye from the app")


async def ws_deny(websocket: StarletteWebSocket) -> None:
    """Refuses with a denial response (the websocket.http.response extension)."""
    await websocket.send_denial_response(
        Response("no entry\n", status_code=401, headers={"www-authenticate": "Token"})
    )


async def ws_close_before_accept(websocket: StarletteWebSocket) -> None:
    await websocket.close()


async def ws_zero_copy(websocket: StarletteWebSocket) -> None:
    """Echo through fastws's zero-copy extension: each binary message is a view of the
    memory it was received into, sent back without a copy; replies with what it got."""
    await websocket.receive()  # websocket.connect (what Starlette's accept() does first)
    await websocket.send({"type": "websocket.accept", "fastws.message": True})
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if "fastws.message" in message:
            data = message["bytes"]
            await websocket.send_text(f"{type(data).__name__} {len(data)}")
            await websocket.send({"type": "websocket.send", "bytes": data, "fastws.release": True})
            await websocket.send_text(f"released {message['fastws.message'].released}")
        elif message.get("bytes") is not None:
            await websocket.send_text(f"small {type(message['bytes']).__name__}")
        else:
            await websocket.send_text(message["text"])


async def ws_flood(websocket: StarletteWebSocket) -> None:
    """Sends 200 messages of 256 KiB as fast as send() lets it; counts them in /seen."""
    await websocket.accept()
    seen["flood_sent"] = 0
    chunk = b"f" * (256 * 1024)
    for _ in range(200):
        await websocket.send_bytes(chunk)
        seen["flood_sent"] += 1
    await websocket.close()


async def ws_ticker(websocket: StarletteWebSocket) -> None:
    """Sends until a send fails (Starlette raises WebSocketDisconnect, uncaught here)."""
    await websocket.accept()
    while True:
        await websocket.send_text("tick")
        await asyncio.sleep(0.01)


async def ws_patient(websocket: StarletteWebSocket) -> None:
    """Waits for each message at most 50 ms (asyncio.wait_for cancels the receive when it
    expires), says "timeout" once per silence, echoes what then arrives."""
    await websocket.accept()
    quiet = False
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), 0.05)
        except TimeoutError:
            if not quiet:
                await websocket.send_text("timeout")
                quiet = True
            continue
        if message["type"] == "websocket.disconnect":
            return
        quiet = False
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def ws_received(websocket: StarletteWebSocket) -> None:
    """Answers each message with what it arrived as (type, size, SHA-256) and what the
    worker's message memory holds right after: its budget's charge and the bytes kept in its
    region cache (a message received into the bytes delivered maps no region). Text
    commands: "gc" collects garbage first; "wait-held N" waits until the budget holds N
    bytes before the next receive; "leave-held N" waits so, then leaves without reading."""
    await websocket.accept()
    budget = connection(websocket).server.budget
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text, data = message.get("text"), message.get("bytes")
        if text is not None:
            command, _, arg = text.partition(" ")
            if command == "gc":
                gc.collect()
            elif command in ("wait-held", "leave-held"):
                while budget.held < int(arg):
                    await asyncio.sleep(0.01)
                if command == "leave-held":
                    return
                continue
            data = text.encode()
        await websocket.send_json(
            {
                "type": type(message.get("bytes", message.get("text"))).__name__,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "held": budget.held,
                "cached": budget.cache.held if budget.cache is not None else 0,
            }
        )


async def ws_room(websocket: StarletteWebSocket) -> None:
    """fastws channels from an ASGI app: subscribe the connection, publish what it sends."""
    await websocket.accept()
    room = websocket.path_params["room"]
    connection(websocket).subscribe(room)
    await websocket.send_text("joined")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await fastws.publish(room, message["text"])


async def publish_route(request: Any) -> Response:
    """An HTTP route publishing on a channel (fastws.publish works anywhere in the worker)."""
    await fastws.publish(request.path_params["room"], (await request.body()).decode())
    return Response(b"published\n")


starlette_app = Starlette(
    routes=[
        Route("/", home),
        Route("/upload", upload, methods=["POST"]),
        Route("/slow-upload", slow_upload, methods=["POST"]),
        Route("/echo", echo_body, methods=["POST", "PUT"]),
        Route("/stream", stream),
        Route("/wait-disconnect", wait_disconnect),
        Route("/seen", seen_route),
        Route("/publish/{room}", publish_route, methods=["POST"]),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/scope", ws_scope),
        WebSocketRoute("/deny", ws_deny),
        WebSocketRoute("/close-before-accept", ws_close_before_accept),
        WebSocketRoute("/zero-copy", ws_zero_copy),
        WebSocketRoute("/received", ws_received),
        WebSocketRoute("/room/{room}", ws_room),
        WebSocketRoute("/flood", ws_flood),
        WebSocketRoute("/ticker", ws_ticker),
        WebSocketRoute("/patient", ws_patient),
    ],
    lifespan=lifespan,
)


# -- FastAPI -------------------------------------------------------------------------------------

fastapi_app = FastAPI(lifespan=lifespan)


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(request: Request) -> dict[str, Any]:
    item = await request.json()
    return {"created": item, "greeting": request.state.greeting}


@fastapi_app.get("/hello", response_class=PlainTextResponse)
async def hello() -> str:
    return "Hello, world!"


@fastapi_app.websocket("/ws/{client_id}")
async def chat(websocket: WebSocket, client_id: int) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"#{client_id}: {data}")
    except WebSocketDisconnect as exc:
        seen["disconnects"].append([exc.code, exc.reason])


# -- lifespan failures -----------------------------------------------------------------------------


@asynccontextmanager
async def failing_lifespan(app: Any) -> AsyncIterator[None]:
    raise RuntimeError("database unreachable")
    yield


failing_app = Starlette(routes=[Route("/", home)], lifespan=failing_lifespan)


async def no_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that does not speak lifespan (it raises on that scope)."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope {scope['type']}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"bare"})


class ForcedApp:
    """An ASGI app whose parameters do not say so (``*args``): needs --interface asgi."""

    async def __call__(self, *args: Any) -> None:
        await no_lifespan_app(*args)


forced_app = ForcedApp()


async def raw_responses(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Edge cases of the HTTP response path, by path: /no-content sends a body with 204;
    /bad-header sends a header with a line break in it."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/no-content":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"must not be sent"})
    elif scope["path"] == "/bad-header":
        headers = [(b"x-evil", b"a\r\nset-cookie: stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"unreachable"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
