"""Callback-style handlers (fastws.Listener): the same protocol, limits and closing as the
coroutine API, with messages delivered from the read that completed them.

Real server processes, driven by the `websockets` client (and the raw wire client for what a
well-behaved client will not send).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import fastws
from fastws.listener import Listener, as_listener
from tests.conftest import ServerFactory
from tests.listener_apps import FAILURE_MARKER
from tests.wire import OP_BINARY, OP_TEXT, WireClient, encode_frame

MiB = 1 << 20
TIMEOUT = 10


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- which handlers are listeners ------------------------------------------------------------


class _Sub(Listener):
    def on_message(self, ws: Any, message: Any) -> None:
        pass


class _Duck:
    def on_message(self, ws: Any, message: Any) -> None:
        pass


class _AsyncDuck:
    async def on_message(self, ws: Any, message: Any) -> None:
        pass


async def _coroutine_handler(ws: Any) -> None:
    pass


def test_as_listener_tells_the_handler_styles_apart() -> None:
    """A Listener instance is used as is, a class with on_message is made once, a duck-typed
    object is wrapped (missing callbacks do nothing); coroutine handlers and async
    on_message are not listeners."""
    instance = _Sub()
    assert as_listener(instance) is instance
    assert isinstance(as_listener(_Sub), _Sub)
    duck = as_listener(_Duck())
    assert duck is not None
    duck.on_open(None)  # type: ignore[arg-type]
    duck.on_close(None, 1000, "")  # type: ignore[arg-type]
    assert as_listener(_AsyncDuck()) is None
    assert as_listener(_coroutine_handler) is None


# -- in one process: no task per connection -------------------------------------------------


def test_listener_connections_hold_no_task() -> None:
    """A connection served by a listener runs no task (that is what makes it cheaper than a
    coroutine handler, idle or busy): 20 connections, echoing, add no task to the loop;
    coroutine handlers add one each."""

    class Echo(fastws.Listener):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send_nowait(message)

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def count_tasks(app: Any) -> int:
        async with fastws.serve(app, port=0) as server:
            base = len(asyncio.all_tasks())
            clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(20)]
            for client in clients:
                await client.send("x")
                assert await asyncio.wait_for(client.recv(), TIMEOUT) == "x"
            grown = len(asyncio.all_tasks()) - base
            for client in clients:
                await client.close()
            return grown - 20  # the websockets clients' own tasks: one per connection

    assert run(count_tasks(Echo())) == 0
    assert run(count_tasks(handler)) == 20


def test_recv_on_a_listener_connection_is_an_error() -> None:
    """Messages of a listener's connection go to on_message; a task calling recv() on it is
    told so at once instead of waiting for ever."""
    errors: list[str] = []

    class Confused(fastws.Listener):
        def on_open(self, ws: Any) -> None:
            asyncio.get_running_loop().create_task(self.read(ws))

        async def read(self, ws: Any) -> None:
            try:
                await ws.recv()
            except RuntimeError as exc:
                errors.append(str(exc))

        def on_message(self, ws: Any, message: Any) -> None:
            ws.send_nowait(message)

    async def scenario() -> None:
        async with (
            fastws.serve(Confused(), port=0) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as client,
        ):
            await client.send("x")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "x"

    run(scenario())
    assert errors and "listener" in errors[0]


# -- real server processes -------------------------------------------------------------------


def test_builtin_echo_is_a_listener_and_echoes_every_size(start_server: ServerFactory) -> None:
    """`fastws serve` with no APP runs the Echo listener: text and binary of every length
    class (7-bit, 16-bit, 64-bit lengths; 16 MiB) come back byte-exact and as the same type."""
    server = start_server(app="fastws.apps.echo:Echo", max_message_size=32 * MiB)

    async def scenario() -> None:
        async with connect(server.url, max_size=None) as client:
            for size in (0, 1, 125, 126, 65535, 65536, MiB + 3, 16 * MiB):
                data = os.urandom(size)
                await client.send(data)
                assert await client.recv() == data
            for text in ("", "héllo ✓", "x" * 70000):
                await client.send(text)
                assert await client.recv() == text

    run(scenario())


def test_pipelined_messages_answered_in_order_in_few_writes(start_server: ServerFactory) -> None:
    """1,000 messages sent in one burst are all echoed, in order: the answers to one read
    leave together, none is lost or reordered."""
    server = start_server(app="fastws.apps.echo:Echo")
    with WireClient(server.port) as client:
        client.handshake()
        burst = b"".join(
            encode_frame(OP_BINARY, i.to_bytes(4, "big"), mask=True) for i in range(1000)
        )
        client.send_raw(burst)
        for i in range(1000):
            opcode, payload = client.recv_message()
            assert (opcode, payload) == (OP_BINARY, i.to_bytes(4, "big"))


def test_fragments_and_pings_reach_the_listener_like_any_message(
    start_server: ServerFactory,
) -> None:
    """A fragmented message arrives whole (binary as a Message), a ping is answered with its
    pong, and both interleave correctly."""
    server = start_server(app="tests.listener_apps:Report")

    async def scenario() -> None:
        async with connect(server.url) as client:
            assert await client.recv() == "open"
            await client.send([b"ab", b"cd", b"ef"])
            assert json.loads(await client.recv()) == {"type": "Message", "size": 6}
            assert await client.recv() == b"abcdef"
            pong = await client.ping(b"p1")
            await asyncio.wait_for(pong, TIMEOUT)
            await client.send(["tex", "t"])
            assert json.loads(await client.recv()) == {"type": "text", "size": 4}
            assert await client.recv() == "text"

    run(scenario())


def test_open_and_close_callbacks_once_per_connection(start_server: ServerFactory) -> None:
    """on_open runs before any message; on_close runs once per connection with the code the
    peer closed with (1000, 4001 with its reason, 1006 for a dropped TCP connection)."""
    server = start_server(app="tests.listener_apps:Report")

    async def scenario() -> Any:
        client = await connect(server.url)
        assert await client.recv() == "open"
        await client.close()
        client = await connect(server.url)
        assert await client.recv() == "open"
        await client.close(4001, "done")
        with WireClient(server.port) as wire:  # leaves without a closing handshake
            wire.handshake()
            assert wire.recv_message() == (OP_TEXT, b"open")
        deadline = time.monotonic() + TIMEOUT
        async with connect(server.url) as client:
            assert await client.recv() == "open"
            while True:
                await client.send("closed?")
                seen = json.loads(await client.recv())
                if len(seen["closed"]) == 3 or time.monotonic() > deadline:
                    return seen
                await asyncio.sleep(0.05)

    seen = run(scenario())
    assert seen["opened"] == 4
    assert seen["closed"] == [[1000, ""], [4001, "done"], [1006, ""]]


def test_close_nowait_and_tasks_on_the_same_connection(start_server: ServerFactory) -> None:
    """A listener may start a task that uses the coroutine API (`await ws.send`) on the same
    connection, and may close with `close_nowait(code, reason)`: the client sees that code."""
    server = start_server(app="tests.listener_apps:Report")

    async def scenario() -> None:
        async with connect(server.url) as client:
            assert await client.recv() == "open"
            await client.send("later")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "later"
            await client.send("bye")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")

    run(scenario())


def test_exception_in_a_callback_closes_1011_and_spares_the_others(
    start_server: ServerFactory,
) -> None:
    """An exception in on_message (or on_open) is logged with its traceback and closes that
    connection with 1011; the worker goes on serving other connections."""
    server = start_server(app="tests.listener_apps:Failing")
    failing_open = start_server(app="tests.listener_apps:FailingOpen")

    async def scenario() -> None:
        async with connect(server.url) as bystander, connect(server.url) as victim:
            await victim.send("fail")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(victim.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
            assert FAILURE_MARKER not in (info.value.rcvd.reason or "")
            await bystander.send("still here")
            assert await asyncio.wait_for(bystander.recv(), TIMEOUT) == "still here"
        async with connect(failing_open.url) as client:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011

    run(scenario())
    assert FAILURE_MARKER in server.wait_for_log(FAILURE_MARKER)
    assert FAILURE_MARKER in failing_open.wait_for_log(FAILURE_MARKER)


def test_protocol_errors_close_with_the_rfc_code(start_server: ServerFactory) -> None:
    """A protocol violation gets the same close codes with a listener: an unmasked frame
    1002, invalid UTF-8 1007, a message over max_message_size 1009."""
    server = start_server(app="fastws.apps.echo:Echo", max_message_size=1024)
    cases = [
        (encode_frame(OP_TEXT, b"hi", mask=False), 1002),
        (encode_frame(OP_TEXT, b"\xff\xfe", mask=True), 1007),
        (encode_frame(OP_BINARY, b"x" * 2048, mask=True), 1009),
    ]
    for frame, code in cases:
        with WireClient(server.port) as client:
            client.handshake()
            client.send_raw(frame)
            assert client.expect_close(code)[0] == code


def test_a_peer_that_does_not_read_stops_the_reading(start_server: ServerFactory) -> None:
    """Echoing to a client that sends but never reads: once the answers fill write_limit,
    the server stops reading from it, so the client's sends block and the server's memory
    stays bounded (no task or queue is there to hold them back: backpressure is the read
    pause)."""
    server = start_server(app="fastws.apps.echo:Echo")
    frame = encode_frame(OP_BINARY, b"\x00" * MiB, mask=True)
    sent = 0
    with WireClient(server.port) as client:
        client.handshake()
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        baseline = server.rss_bytes()
        client.sock.settimeout(1.0)
        try:
            while sent < 512 * MiB:
                client.sock.sendall(frame)
                sent += len(frame)
        except TimeoutError:
            pass
        grown = server.rss_bytes() - baseline
        assert sent < 512 * MiB, "the server kept reading what it could not answer"
        assert grown < 96 * MiB, f"server RSS grew {grown / MiB:.0f} MiB"
    assert server.is_running()


def test_unprompted_sends_respect_writing_paused(start_server: ServerFactory) -> None:
    """A listener that pushes data (from a task, pausing while `writing_paused`) to a client
    that reads slowly delivers everything in order with bounded server memory."""
    server = start_server(app="tests.listener_apps:Flood")
    with WireClient(server.port) as client:
        client.handshake()
        client.send_text("go")
        baseline = server.rss_bytes()
        time.sleep(1.0)
        grown = server.rss_bytes() - baseline
        assert grown < 96 * MiB, f"server RSS grew {grown / MiB:.0f} MiB"
        for expected in range(20):
            opcode, payload = client.recv_message()
            assert opcode == OP_BINARY and len(payload) == MiB
            assert int.from_bytes(payload[:8], "big") == expected


def test_sigterm_closes_listener_connections_1001(start_server: ServerFactory) -> None:
    """A graceful stop closes a listener's connections with 1001, like a handler's."""
    server = start_server(app="fastws.apps.echo:Echo")

    async def scenario() -> None:
        async with connect(server.url) as client:
            await client.send("x")
            assert await client.recv() == "x"
            server.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001

    run(scenario())


def test_pong_for_a_ping_inside_a_fragmented_message_comes_first(
    start_server: ServerFactory,
) -> None:
    """A ping between two fragments (one read) is answered before the message it interrupted
    is echoed: the pong answers a frame that came earlier (Autobahn 5.6)."""
    server = start_server(app="fastws.apps.echo:Echo")
    with WireClient(server.port) as client:
        client.handshake()
        client.send_raw(
            encode_frame(OP_TEXT, b"frag", fin=False, mask=True)
            + encode_frame(0x9, b"ping!", mask=True)
            + encode_frame(0x0, b"ment", mask=True)
        )
        pong = client.recv_frame()
        assert (pong.opcode, pong.payload) == (0xA, b"ping!")
        echo = client.recv_frame()
        assert (echo.opcode, echo.payload) == (OP_TEXT, b"fragment")


def test_the_readme_listener_example_runs() -> None:
    """The README's `ticker.py` Listener, exactly as written: a subscription is answered."""
    from tests.readme import blocks

    [source] = [b for b in blocks("An application", "python") if b.startswith("# ticker.py")]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md:ticker.py", "exec"), namespace)

    async def scenario() -> None:
        async with (
            fastws.serve(namespace["Quotes"], port=0) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as client,
        ):
            await client.send("sub EURUSD")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "ok EURUSD"

    run(scenario())


def test_a_parser_bug_closes_1011_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception inside the protocol core (here: a ping handler that raises) closes that
    connection with 1011 and logs the traceback; the server goes on serving others."""
    from fastws.protocol.connection import Connection

    real = Connection._control

    def broken(self: Connection, opcode: int, payload: bytes) -> None:
        if payload == b"boom":
            raise KeyError("deliberate parser bug")
        real(self, opcode, payload)

    monkeypatch.setattr(Connection, "_control", broken)

    class Echo(fastws.Listener):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send_nowait(message)

    async def scenario() -> None:
        async with (
            fastws.serve(Echo(), port=0) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as victim,
            connect(f"ws://127.0.0.1:{server.port}/") as bystander,
        ):
            await victim.ping(b"boom")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(victim.recv(), TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
            await bystander.send("still here")
            assert await asyncio.wait_for(bystander.recv(), TIMEOUT) == "still here"

    with caplog.at_level("ERROR", logger="fastws"):
        run(scenario())
    assert any("deliberate parser bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
