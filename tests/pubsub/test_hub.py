"""Channels on a real server: `ws.subscribe`, `fastws.publish` / `ws.server.publish`, across
workers through the shared ring (broker local), with the `websockets` client and raw sockets.

The app is tests/pubsub/apps.py:rooms; each connection first reports its worker's pid, so a
test knows which worker holds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

import fastws
from tests.process.helpers import metrics, total, wait_for, workers

APP = "tests.pubsub.apps:rooms"
TIMEOUT = 20


async def open_until_each_worker_has(url: str, pids: int, each: int) -> list[tuple[Any, int]]:
    """Connections until each of `pids` workers holds at least `each` (reuseport spreads them
    by a hash of the connection, so keep opening)."""
    conns: list[tuple[ClientConnection, int]] = []
    for _ in range(200):
        ws = await connect(url)
        pid = json.loads(await ws.recv())["pid"]
        conns.append((ws, pid))
        counts: dict[int, int] = {}
        for _, p in conns:
            counts[p] = counts.get(p, 0) + 1
        if len(counts) == pids and min(counts.values()) >= each:
            return conns
    raise AssertionError(f"connections did not reach {pids} workers: {counts}")


async def command(ws: ClientConnection, **cmd: Any) -> list[str | bytes]:
    """Send a command; return the channel messages that arrived before its answer."""
    await ws.send(json.dumps(cmd))
    before = []
    while True:
        message = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if isinstance(message, str) and message.startswith('{"ok"'):
            assert json.loads(message) == {"ok": cmd}
            return before
        before.append(message)


async def messages(ws: ClientConnection, n: int) -> list[str | bytes]:
    got: list[str | bytes] = []
    while len(got) < n:
        message = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if isinstance(message, str) and message.startswith('{"ok"'):
            continue  # the answer to another connection's command on this one: none here
        got.append(message)
    return got


def test_a_publish_reaches_every_subscriber_on_every_worker_once_and_in_order(
    start_server: Any,
) -> None:
    """Publishes from a connection on worker A, then from one on worker B: every subscriber,
    on both workers (the publishers included), gets each message exactly once, in publish
    order; nothing from the first round shows up again in the second. /metrics counts the
    publishes."""
    server = start_server(app=APP, workers=2)
    workers(server, 2)

    async def scenario() -> None:
        conns = await open_until_each_worker_has(server.url, 2, 2)
        for ws, _ in conns:
            await command(ws, sub="news")
        pids = sorted({pid for _, pid in conns})
        for round_, pid in enumerate(pids):
            publisher = next(ws for ws, p in conns if p == pid)
            text = f"r{round_}-"
            own = await command(publisher, pub="news", text=text, count=100)
            expected = [f"{text}{i}" for i in range(100)]
            assert own == expected  # its own copies came before the command's answer
            for ws, _ in conns:
                if ws is not publisher:
                    assert await messages(ws, 100) == expected
        for ws, _ in conns:
            await ws.close()

    asyncio.run(scenario())
    # Each worker publishes its counters with its heartbeat (at most 0.25 s late).
    wait_for(lambda: total(metrics(server), "fastws_published_total") == 200, 5, "200 published")


def test_binary_messages_cross_workers_intact(start_server: Any) -> None:
    """Binary messages of 0 B to 1 MiB published on one worker arrive byte for byte, as
    binary, on the other."""
    server = start_server(app=APP, workers=2)
    workers(server, 2)

    async def scenario() -> None:
        conns = await open_until_each_worker_has(server.url, 2, 1)
        for ws, _ in conns:
            await command(ws, sub="blobs")
        publisher, pid = conns[0]
        other = next(ws for ws, p in conns if p != pid)
        for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
            await command(publisher, pub="blobs", binary=size, count=3)
            got = await messages(other, 3)
            assert got == [bytes([i]) * size for i in range(3)]
        for ws, _ in conns:
            await ws.close()

    asyncio.run(scenario())


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed * 2), hard))


REQUEST = (
    "GET /sub/{room} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


async def raw_subscriber(port: int, room: str) -> tuple[asyncio.StreamReader, Any, int]:
    """A subscriber on raw sockets: the handshake, then the {"pid"} frame; returns the
    reader (positioned at the first channel message), the writer and the worker's pid."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST.format(room=room).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    b0, b1 = await reader.readexactly(2)
    assert b0 == 0x81 and b1 < 126
    pid = json.loads(await reader.readexactly(b1))["pid"]
    return reader, writer, pid


def test_a_thousand_subscribers_on_two_workers_each_get_a_thousand_messages(
    start_server: Any,
) -> None:
    """1,000 subscribers spread over 2 workers, 1,000 messages published on one of them: every
    subscriber's byte stream is exactly the 1,000 frames, in order (counted and compared)."""
    _raise_open_files(2200)
    server = start_server(app=APP, workers=2)
    workers(server, 2)
    expected = b"".join(bytes([0x81, len(p)]) + p for p in (f"m{i}".encode() for i in range(1000)))

    async def scenario() -> None:
        subs = await asyncio.gather(*(raw_subscriber(server.port, "fan") for _ in range(1000)))
        by_worker: dict[int, int] = {}
        for _, _, pid in subs:
            by_worker[pid] = by_worker.get(pid, 0) + 1
        assert len(by_worker) == 2, by_worker
        async with connect(server.url) as publisher:
            await publisher.recv()
            await command(publisher, pub="fan", text="m", count=1000)
            streams = await asyncio.wait_for(
                asyncio.gather(*(reader.readexactly(len(expected)) for reader, _, _ in subs)),
                60,
            )
        assert sum(stream == expected for stream in streams) == 1000
        for _, writer, _ in subs:
            writer.close()

    asyncio.run(scenario())
    wait_for(
        lambda: total(metrics(server), "fastws_messages_out_total") >= 1000 * 1000,
        5,
        "a million messages counted out",
    )


def test_subscribers_of_a_restarted_worker_and_its_neighbour_get_no_replay(
    start_server: Any,
) -> None:
    """A worker killed with SIGKILL is replaced (its ring slot reused from where it was):
    subscribers on the survivor and on the replacement get the next publishes exactly once,
    with no message of before the restart replayed and none lost."""
    server = start_server(app=APP, workers=2)
    before = workers(server, 2)

    async def scenario() -> None:
        conns = await open_until_each_worker_has(server.url, 2, 1)
        for ws, _ in conns:
            await command(ws, sub="r")
        victim = conns[0][1]
        survivor = next(ws for ws, p in conns if p != victim)
        await command(survivor, pub="r", text="before-", count=20)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> set[int] | None:  # until reaped, the victim still counts as a child
            now = workers(server, 2)
            return now if victim not in now else None

        now = await asyncio.to_thread(wait_for, replaced, 10, "the killed worker replaced")
        assert len(now & before) == 1
        fresh = await open_until_each_worker_has(server.url, 2, 1)
        for ws, _ in fresh:
            await command(ws, sub="r")
        replacement = next(ws for ws, p in fresh if p not in before)
        expected = [f"after-{i}" for i in range(30)]
        assert await command(replacement, pub="r", text="after-", count=30) == expected
        for ws, _ in fresh:
            if ws is not replacement:
                assert await messages(ws, 30) == expected
        # The survivor's old connection saw the first round, then only the second.
        assert await messages(survivor, 30) == expected
        for ws, pid in conns + fresh:
            if pid == victim:
                ws.transport.abort()  # its worker is gone: no closing handshake to wait for
            else:
                await ws.close()

    asyncio.run(scenario())


def test_unsubscribe_and_channels(start_server: Any) -> None:
    """ws.channels lists the subscriptions; after unsubscribe a connection gets nothing more
    from that channel while the others still do."""
    server = start_server(app=APP, workers=1)

    async def scenario() -> None:
        async with connect(server.url) as a, connect(server.url) as b:
            await a.recv()
            await b.recv()
            for ws in (a, b):
                await command(ws, sub="x")
                await command(ws, sub="y")
            await a.send(json.dumps({"channels": True}))
            assert json.loads(await a.recv()) == {"channels": ["x", "y"]}
            await command(a, unsub="x")
            assert await command(b, pub="x", text="x", count=2) == ["x0", "x1"]
            assert await command(b, pub="y", text="y", count=1) == ["y0"]
            assert await messages(a, 1) == ["y0"]  # not x0, x1

    asyncio.run(scenario())


def test_publish_outside_a_serving_server_raises() -> None:
    """fastws.publish() with no server serving in the process says so."""
    with pytest.raises(RuntimeError, match="no fastws server"):
        asyncio.run(fastws.publish("room", "x"))


def test_closed_connections_leave_their_channels() -> None:
    """A connection that closes is removed from every channel of its worker: nothing of it
    stays in the hub or the broker once every subscriber is gone (in-process server)."""

    async def handler(ws: Any) -> None:
        for room in ("a", "b", "c"):
            ws.subscribe(room)
        await ws.send("subscribed")
        async for _ in ws:
            pass

    async def scenario() -> None:
        async with fastws.serve(handler, port=0) as server:
            hub = server.hub
            assert hub is not None
            clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(5)]
            for client in clients:
                assert await client.recv() == "subscribed"
            assert len(hub.subscribers("a")) == 5
            assert hub.broker._channels == {"a", "b", "c"}  # type: ignore[attr-defined]
            for client in clients:
                await client.close()
            await asyncio.to_thread(
                wait_for, lambda: not server.connections, 5, "connections closed"
            )
            assert hub._subscribers == {} and hub._rooms_of == {}
            assert hub.broker._channels == set()  # type: ignore[attr-defined]

    asyncio.run(scenario())
