"""The same Starlette application for every ASGI server of the benchmark.

    /       WebSocket echo (text and binary), as users write one with Starlette
    /hello  HTTP hello world (plain text)

`zero_copy_app` is the same echo through fastws's zero-copy extension (each binary
message a view of the memory it was received into, sent back as it is): what the `bytes`
copy of ASGI costs on large messages. `raw_app` is the same echo as a bare ASGI callable,
no framework: beside `app` on the same server, what Starlette's layer costs per message.
"""

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


async def echo_zero_copy(websocket: WebSocket) -> None:
    await websocket.receive()  # websocket.connect
    await websocket.send({"type": "websocket.accept", "fastws.message": True})
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            await websocket.send_text(text)
        else:
            data = message["bytes"]
            await websocket.send({"type": "websocket.send", "bytes": data, "fastws.release": True})


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[WebSocketRoute("/", echo), Route("/hello", hello)])
zero_copy_app = Starlette(routes=[WebSocketRoute("/", echo_zero_copy), Route("/hello", hello)])


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The WebSocket echo with nothing between the server and the loop but ASGI itself."""
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            await send({"type": event["type"] + ".complete"})
            if event["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
