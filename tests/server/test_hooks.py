"""Handshake hooks as `websockets` users know them (issue 18 items 4, 5, 2), on real servers.

process_request(ws, request) for every HTTP request on the port (plain GETs and /metrics
too), process_response(ws, request, response) on the 101, select_subprotocol(ws, offered),
and a {path: handler} table as the application. Apps: tests/server/parity_apps.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ServerFactory, ServerProcess
from tests.readme import blocks, serve_options

APPS = "tests.server.parity_apps"


def http_get(server: ServerProcess, path: str, *headers: str) -> tuple[int, bytes]:
    """A plain HTTP GET (no Upgrade): the status and the body."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        head = "".join(f"{h}\r\n" for h in headers)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{head}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def guarded(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(
        f"{APPS}:report_user", workers=0, process_request=f"{APPS}:gatekeeper"
    )


def test_request_hook_answers_a_plain_get(guarded: ServerProcess) -> None:
    """Item 4: the hook sees requests without Upgrade, so it can serve GET /health (it got
    400 "missing Upgrade" before the hook ran); other plain GETs still get that 400."""
    assert http_get(guarded, "/health") == (200, b"ok\n")
    assert http_get(guarded, "/elsewhere")[0] == 400


def test_request_hook_guards_metrics_on_the_shared_port(guarded: ServerProcess) -> None:
    """Item 2: /metrics on the application's port goes through the request hook."""
    assert http_get(guarded, "/metrics") == (401, b"unauthorized\n")
    status, body = http_get(guarded, "/metrics", "Authorization: Bearer s3cret")
    assert status == 200 and b"fastws_" in body


def test_request_hook_leaves_state_on_the_connection(guarded: ServerProcess) -> None:
    """Item 4: the hook gets the connection: its remote address, and attributes it sets
    there are the handler's to read (the authenticated user)."""
    with connect(
        guarded.url_for("/private"), additional_headers={"Authorization": "Bearer s3cret"}
    ) as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert seen["user"] == "alice"
        assert seen["seen_from"] == list(ws.socket.getsockname()[:2])
    with pytest.raises(InvalidStatus) as refused:
        connect(guarded.url_for("/private"))
    assert refused.value.response.status_code == 401


def test_request_hook_sees_an_asgi_apps_plain_requests(start_server: ServerFactory) -> None:
    """Item 4 with an ASGI application: its plain HTTP requests (and /metrics beside it) go
    through process_request first, on one keep-alive connection: the hook answers /health,
    refuses /metrics and /private without the token (the app never sees them), and what it
    learned reaches the app (fastws.asgi.connection). The path it sees is the decoded one
    the routes use, so /%6detrics is guarded too. A hook that raises: 500, and on."""
    server = start_server(
        f"{APPS}:asgi_whoami", workers=0, process_request=f"{APPS}:gatekeeper_async"
    )
    token = {"Authorization": "Bearer s3cret"}
    with httpx.Client(base_url=f"http://{server.host}:{server.port}", timeout=10) as client:
        health = client.get("/health")
        assert (health.status_code, health.text) == (200, "ok\n")
        for path in ("/metrics", "/%6detrics", "/private"):
            refused = client.get(path)
            assert (refused.status_code, refused.text) == (401, "unauthorized\n"), path
        assert b"fastws_" in client.get("/metrics", headers=token).content
        seen = client.get("/private", headers=token).json()
        assert seen["user"] == "alice" and seen["path"] == "/private"
        assert seen["seen_from"][0] == "127.0.0.1"
        assert client.get("/anyone").json()["user"] is None  # let in without the token
        assert client.get("/boom").status_code == 500
        again = client.get("/again", headers=token).json()
        assert again["user"] == "alice"
        assert again["seen_from"] == seen["seen_from"]  # the same connection, each request
    server.wait_for_log("process_request failed for /boom")


@pytest.mark.parametrize("hook", ["add_headers", "add_headers_async"])
def test_response_hook_adds_headers_to_the_101(start_server: ServerFactory, hook: str) -> None:
    """Item 5: process_response (sync or async) changes the 101's headers, or refuses."""
    server = start_server(f"{APPS}:report_user", workers=0, process_response=f"{APPS}:{hook}")
    with connect(server.url) as ws:
        assert ws.response.headers["Set-Cookie"] == "session=abc; HttpOnly"
        assert ws.response.headers["Server"] == "parity-test"
        assert json.loads(ws.recv(timeout=10))["user"] == "unset"
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url_for("/refused"))
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("hook", ["last_offered", "last_offered_async"])
def test_select_subprotocol_callable(start_server: ServerFactory, hook: str) -> None:
    """Item 5: select_subprotocol(ws, offered), a function or a coroutine function like the
    other hooks, picks from the client's offer (here its last preference, which a fixed
    server list cannot express); a choice the client did not offer is the application's
    error: 500, and the server goes on."""
    server = start_server(f"{APPS}:report_user", workers=0, select_subprotocol=f"{APPS}:{hook}")
    with connect(server.url, subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert json.loads(ws.recv(timeout=10))["subprotocol"] == "v2"
    with connect(server.url) as ws:
        assert ws.subprotocol is None
    with pytest.raises(InvalidStatus) as failed:
        connect(server.url, subprotocols=["bogus"])
    assert failed.value.response.status_code == 500
    server.wait_for_log("select_subprotocol chose 'not-offered', not among ['bogus']")
    with connect(server.url, subprotocols=["v3"]) as ws:
        assert ws.subprotocol == "v3"


def test_both_fastws_clients_see_the_same_subprotocol(start_server: ServerFactory) -> None:
    """The blocking client (fastws.sync) and the asyncio client share the handshake: the
    same offer on the wire gives the same subprotocol on each (the server's choice, none
    when nothing was offered), and the same InvalidStatus when the server refuses."""
    import asyncio

    import fastws
    import fastws.sync

    server = start_server(
        f"{APPS}:report_user", workers=0, select_subprotocol=f"{APPS}:last_offered_async"
    )

    def blocking(offer: list[str]) -> tuple[str | None, str | None]:
        with fastws.sync.connect(server.url, subprotocols=offer) as ws:
            return ws.subprotocol, json.loads(ws.recv())["subprotocol"]

    async def in_asyncio(offer: list[str]) -> tuple[str | None, str | None]:
        async with fastws.connect(server.url, subprotocols=offer) as ws:
            return ws.subprotocol, json.loads(await ws.recv())["subprotocol"]

    for offer, expected in ((["a", "b"], "b"), (["only"], "only"), ([], None)):
        assert blocking(offer) == asyncio.run(in_asyncio(offer)) == (expected, expected)
    with pytest.raises(fastws.InvalidStatus) as sync_refused:
        blocking(["bogus"])
    with pytest.raises(fastws.InvalidStatus) as async_refused:
        asyncio.run(in_asyncio(["bogus"]))
    assert sync_refused.value.response.status == async_refused.value.response.status == 500


def test_path_table_routes_to_handlers(start_server: ServerFactory) -> None:
    """Item 5: APP may be {"/chat": chat, "/feed": feed}; another path gets 404."""
    server = start_server(f"{APPS}:ROUTES", workers=0)
    for path in ("/chat", "/feed"):
        with connect(server.url_for(path)) as ws:
            assert ws.recv(timeout=10) == path[1:]
    with pytest.raises(InvalidStatus) as missing:
        connect(server.url_for("/other"))
    assert missing.value.response.status_code == 404


def test_path_table_mixes_listeners_and_coroutine_handlers(start_server: ServerFactory) -> None:
    """Item 5: a table's handlers may be Listeners (a class, instantiated once per worker, or
    an object with on_message) beside coroutine handlers; each path gets its own."""
    server = start_server(f"{APPS}:MIXED", workers=1, process_request=f"{APPS}:gatekeeper")
    with connect(server.url_for("/chat")) as ws:
        assert ws.recv(timeout=10) == "chat"
    for _ in range(2):
        with connect(server.url_for("/shout")) as ws:
            assert ws.recv(timeout=10) == "shout 1 of 1"  # the same instance each time
            ws.send("hello")
            assert ws.recv(timeout=10) == "HELLO"
    with connect(server.url_for("/tally")) as first, connect(server.url_for("/tally")) as second:
        first.send("a")
        assert first.recv(timeout=10) == "1"
        second.send("b")
        assert second.recv(timeout=10) == "2"  # one object serves both connections
    with pytest.raises(InvalidStatus) as missing:
        connect(server.url_for("/feed"))
    assert missing.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as refused:  # the request hook guards listener routes too
        connect(server.url_for("/private"))
    assert refused.value.response.status_code == 401


def test_readme_hooks_example(
    start_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's hooks.py, as written, served with the command line in its comment."""
    [code] = blocks("Handshake hooks and routing", "python")
    (tmp_path / "hooks.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    comment = " ".join(line.lstrip("# ") for line in code.splitlines()[:2])
    command = comment[comment.index("fastws serve") :]
    server = start_server(command.split()[2], workers=0, **serve_options(command))
    token = {"Authorization": "Bearer s3cret"}

    assert http_get(server, "/health") == (200, b"ok\n")
    assert http_get(server, "/metrics")[0] == 401
    with connect(server.url_for("/chat"), additional_headers=token, subprotocols=["chat.v2"]) as ws:
        assert ws.recv(timeout=10) == "hello alice"
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["Set-Cookie"] == "session=1; HttpOnly"
    with connect(server.url_for("/feed?x=1"), additional_headers=token) as ws:
        assert ws.recv(timeout=10) == "feed" and ws.subprotocol is None
    for path, headers, status in [("/chat", {}, 401), ("/other", token, 404)]:
        with pytest.raises(InvalidStatus) as refused:
            connect(server.url_for(path), additional_headers=headers)
        assert refused.value.response.status_code == status


def test_a_handler_table_that_cannot_work_fails_at_start() -> None:
    """Like a single handler, each handler of a table is checked when the server starts."""
    from fastws.handler import HandlerError, check

    from .parity_apps import Shout, Tally, asgi_whoami

    async def good(ws: object) -> None: ...

    def sync(ws: object) -> None: ...

    before = Shout.instances
    assert check({"/a": good, "/b": Shout, "/c": Tally()}) == "table"
    assert Shout.instances == before  # checked without making an instance
    with pytest.raises(HandlerError, match="'/b'"):
        check({"/a": good, "/b": sync})
    with pytest.raises(HandlerError, match=r"'/b'.*ASGI application serves every path"):
        check({"/a": good, "/b": asgi_whoami})
    with pytest.raises(HandlerError, match="must start with '/'"):
        check({"a": good})
