"""Handler apps for the production-parity tests, loaded by the server as
``tests.server.parity_apps:NAME``. Written against the public API only."""

from __future__ import annotations

import json
from typing import Any

from fastws import Listener


async def invert_in_place(ws: Any) -> None:
    """Invert every byte of each binary message in place, through `.array()`, and send the
    same message back: works only if the message's memory is writable."""
    async for message in ws.messages():
        if isinstance(message, str):
            await ws.send(message)
            continue
        try:
            array = message.array()
            array ^= 0xFF
        except (TypeError, ValueError) as exc:  # read-only memory
            await ws.send(f"not writable: {exc}")
            continue
        await ws.send(message, release=True)


async def report_request(ws: Any) -> None:
    """Send what the handler sees of the request and the peer as one JSON text message."""
    headers = ws.request.headers
    await ws.send(
        json.dumps(
            {
                "headers": dict(headers),
                "x_forwarded_for": headers.get_all("X-Forwarded-For"),
                "remote_address": list(ws.remote_address) if ws.remote_address else None,
                "path": ws.request.path,
            }
        )
    )
    async for message in ws:
        await ws.send(message)


# -- handshake hooks (tests/server/test_hooks.py) -------------------------------------------

TOKEN = "Bearer s3cret"


def gatekeeper(ws: Any, request: Any) -> Any:
    """process_request(ws, request): answers GET /health itself, guards /metrics and
    /private with a bearer token, and leaves who it let in on the connection (ws.user)."""
    import fastws

    if request.path == "/health":
        return fastws.Response(200, body=b"ok\n")
    if request.path in ("/metrics", "/private") and request.headers.get("Authorization") != TOKEN:
        return fastws.Response(401, body=b"unauthorized\n")
    ws.user = "alice" if request.headers.get("Authorization") == TOKEN else None
    ws.seen_from = list(ws.remote_address)
    return None


async def gatekeeper_async(ws: Any, request: Any) -> Any:
    """gatekeeper as a coroutine function, which fails on /boom (a hook's bug)."""
    if request.path == "/boom":
        raise RuntimeError("the hook's bug")
    return gatekeeper(ws, request)


async def report_user(ws: Any) -> None:
    """Send what process_request left on the connection, then echo."""
    await ws.send(
        json.dumps(
            {
                "user": getattr(ws, "user", "unset"),
                "seen_from": getattr(ws, "seen_from", None),
                "subprotocol": ws.subprotocol,
            }
        )
    )
    async for message in ws:
        await ws.send(message)


def add_headers(ws: Any, request: Any, response: Any) -> Any:
    """process_response: a cookie and a server name on the 101; /refused gets 403 instead."""
    import fastws

    if request.path == "/refused":
        return fastws.Response(403, body=b"no\n")
    response.headers.append(("Set-Cookie", "session=abc; HttpOnly"))
    response.headers.append(("Server", "parity-test"))
    return None


async def add_headers_async(ws: Any, request: Any, response: Any) -> Any:
    """The same, as a coroutine function."""
    return add_headers(ws, request, response)


def last_offered(ws: Any, offered: list[str]) -> str | None:
    """select_subprotocol: the client's last choice, unless it offered "bogus" (then a value
    it did not offer, which the server must refuse)."""
    if "bogus" in offered:
        return "not-offered"
    return offered[-1]


async def last_offered_async(ws: Any, offered: list[str]) -> str | None:
    """last_offered as a coroutine function."""
    return last_offered(ws, offered)


async def chat(ws: Any) -> None:
    await ws.send("chat")


async def feed(ws: Any) -> None:
    await ws.send("feed")


#: A handler table: each path its handler.
ROUTES = {"/chat": chat, "/feed": feed}


class Shout(Listener):
    """A callback-style handler: says which instance it is, then echoes text upper-cased."""

    instances = 0

    def __init__(self) -> None:
        Shout.instances += 1
        self.number = Shout.instances

    def on_open(self, ws: Any) -> None:
        ws.send_nowait(f"shout {self.number} of {Shout.instances}")

    def on_message(self, ws: Any, message: Any) -> None:
        ws.send_nowait(message.upper() if isinstance(message, str) else bytes(message))


class Tally:
    """A duck-typed listener object (no Listener base): counts the messages of all its
    connections in this worker."""

    def __init__(self) -> None:
        self.count = 0

    def on_message(self, ws: Any, message: Any) -> None:
        self.count += 1
        ws.send_nowait(str(self.count))


#: Coroutine handlers and listeners (a class, an instance) mixed in one table.
MIXED = {"/chat": chat, "/shout": Shout, "/tally": Tally()}


async def asgi_client(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering every HTTP request, and every WebSocket in one text message,
    with json(scope["client"])."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope["client"])})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    body = json.dumps(scope["client"]).encode()
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


async def asgi_whoami(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering every HTTP request, after reading its body, with json({path,
    user, seen_from, client, size}): what a request hook left on the connection
    (fastws.asgi.connection; "unset" without a hook). A WebSocket gets one text message."""
    from fastws.asgi import connection

    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["path"]})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    size = 0
    while True:
        event = await receive()
        size += len(event.get("body", b""))
        if not event.get("more_body"):
            break
    try:
        ws = connection(scope)
    except LookupError:
        user, seen_from = "unset", None
    else:
        user, seen_from = getattr(ws, "user", "unset"), getattr(ws, "seen_from", None)
    report = {"path": scope["path"], "user": user, "seen_from": seen_from, "size": size}
    body = json.dumps({**report, "client": scope["client"]}).encode()
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})
