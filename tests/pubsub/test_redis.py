"""The Redis broker (fastws.pubsub.redis) against a real redis-server on a loopback port.

Each test starts its own `redis-server` (Debian's package; `.ci/run` installs it) without
persistence, and stops it by PID. Without redis-server the tests are skipped, unless
FASTWS_TEST_REDIS=required (set by .ci/run), which makes that a failure.

Two `RedisBroker`s in one event loop stand for two workers (or two hosts): each has its own
connections to Redis, exactly as in separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets

from tests.process.helpers import metrics, total, wait_for
from tests.pubsub.redis_server import RedisServer, redis_server_path

redis = pytest.importorskip("redis.asyncio")

from fastws.pubsub.broker import PublishError  # noqa: E402
from fastws.pubsub.redis import RedisBroker  # noqa: E402

#: Upper bound for anything awaited here: a hang fails the test instead of the suite.
WAIT = 10.0


def require_redis_server() -> None:
    if redis_server_path() is None:
        reason = "redis-server not installed (Debian: apt-get install redis-server)"
        if os.environ.get("FASTWS_TEST_REDIS") == "required":
            pytest.fail(f"{reason} (FASTWS_TEST_REDIS=required)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for the test, stopped (by PID) at its end."""
    require_redis_server()
    with RedisServer() as server:
        yield server


class Inbox:
    """What a broker delivered: (channel, payload bytes, text) in arrival order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lost: list[str | None] = []
        self._changed = asyncio.Event()

    def deliver(self, channel: str, payload: memoryview, text: bool) -> None:
        self.messages.append((channel, bytes(payload), text))
        self._changed.set()

    def on_lost(self, channel: str | None) -> None:
        self.lost.append(channel)

    async def wait_for(self, count: int) -> list[tuple[str, bytes, bool]]:
        """Wait until `count` messages have arrived; return them."""
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    """Poll `check` until it holds (at most WAIT seconds)."""
    async with asyncio.timeout(WAIT):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


async def subscribers(server: RedisServer, channel: str) -> int:
    """How many connections Redis has subscribed to fastws channel `channel`."""
    client = redis.Redis.from_url(server.url)
    try:
        [(_, count)] = await client.pubsub_numsub(f"fastws:{channel}")
        return int(count)
    finally:
        await client.aclose()


async def _subscribers_equal(server: RedisServer, channel: str, count: int) -> bool:
    return await subscribers(server, channel) == count


async def started(server: RedisServer, **options: Any) -> tuple[RedisBroker, Inbox]:
    broker = RedisBroker(server.url, **options)
    inbox = Inbox()
    await broker.start(inbox.deliver, inbox.on_lost)
    return broker, inbox


def test_publish_reaches_every_subscribed_broker_with_its_text_flag(
    redis_server: RedisServer,
) -> None:
    """A publish reaches every broker subscribed to the channel, the publisher's own included,
    with the text/binary flag and the payload intact (a 1 MiB binary payload too)."""

    async def main() -> None:
        (a, inbox_a), (b, inbox_b) = [await started(redis_server) for _ in range(2)]
        try:
            a.subscribe("room")
            b.subscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 2))
            big = os.urandom(1 << 20)
            await a.publish("room", "héllo ✓".encode(), True)
            await a.publish("room", b"\x00\xff binary", False)
            await b.publish("room", memoryview(big), False)
            expected = [
                ("room", "héllo ✓".encode(), True),
                ("room", b"\x00\xff binary", False),
                ("room", big, False),
            ]
            assert await inbox_a.wait_for(3) == expected
            assert await inbox_b.wait_for(3) == expected
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_publishes_arrive_in_order_even_when_not_awaited_one_by_one(
    redis_server: RedisServer,
) -> None:
    """1,000 publishes started at once (pipelined on the one publish connection) reach the
    other broker exactly once each, in publish order."""

    async def main() -> None:
        (a, _), (b, inbox_b) = [await started(redis_server) for _ in range(2)]
        try:
            b.subscribe("ticks")
            await eventually(lambda: _subscribers_equal(redis_server, "ticks", 1))
            await asyncio.gather(*(a.publish("ticks", b"%d" % i, False) for i in range(1000)))
            for i in range(1000, 1100):  # and awaited one by one after them
                await a.publish("ticks", b"%d" % i, False)
            received = await inbox_b.wait_for(1100)
            assert [int(payload) for _, payload, _ in received] == list(range(1100))
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_unsubscribe_stops_delivery_of_that_channel_only(redis_server: RedisServer) -> None:
    """After unsubscribe("room") a broker gets nothing more from "room" but still gets its
    other channels; subscribing again resumes "room"."""

    async def main() -> None:
        (a, _), (b, inbox_b) = [await started(redis_server) for _ in range(2)]
        try:
            b.subscribe("room")
            b.subscribe("marker")
            await eventually(lambda: _subscribers_equal(redis_server, "marker", 1))
            b.unsubscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 0))
            await a.publish("room", b"missed", False)
            # Redis handles one connection's commands in order: when "marker" arrives, the
            # earlier "room" message would have been delivered before it.
            await a.publish("marker", b"after", False)
            assert await inbox_b.wait_for(1) == [("marker", b"after", False)]
            b.subscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await a.publish("room", b"again", True)
            assert (await inbox_b.wait_for(2))[1] == ("room", b"again", True)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_messages_from_other_publishers_are_checked(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything may PUBLISH to a fastws channel in Redis: b'T' + UTF-8 is delivered as text,
    b'B' + bytes as binary; no flag or invalid UTF-8 is dropped with a log line, never
    delivered; channels outside the prefix are not seen."""

    async def main() -> None:
        broker, inbox = await started(redis_server)
        client = redis.Redis.from_url(redis_server.url)
        try:
            broker.subscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            for data in (b"Tfrom redis-cli", b"Xno flag", b"", b"T\xff\xfe", b"B\xff\xfe"):
                await client.publish("fastws:room", data)
            await client.publish("room", b"Toutside the prefix")
            await client.publish("fastws:room", b"Tlast")
            assert await inbox.wait_for(3) == [
                ("room", b"from redis-cli", True),
                ("room", b"\xff\xfe", False),
                ("room", b"last", True),
            ]
        finally:
            await client.aclose()
            await broker.close()

    with caplog.at_level(logging.WARNING, logger="fastws.pubsub"):
        asyncio.run(main())
    # One line for the first bad message, then one per 1,000 (never one per message).
    dropped = [r for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(dropped) == 1
    assert "no text/binary flag" in dropped[0].getMessage()


def test_redis_outage_fails_publishes_then_resumes(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: publishes raise PublishError (reported, not lost silently), with log
    lines; Redis back on the same port: the broker reconnects by itself, subscribes its
    channels again, tells the hub that messages may have been missed (lost(None)) and
    delivers again."""

    async def main() -> None:
        (a, inbox_a), (b, inbox_b) = [await started(redis_server) for _ in range(2)]
        try:
            b.subscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await a.publish("room", b"before", False)
            assert await inbox_b.wait_for(1) == [("room", b"before", False)]

            redis_server.kill()
            await eventually(lambda: not a.connected and not b.connected)
            for _ in range(3):
                with pytest.raises(PublishError):
                    await a.publish("room", b"while down", False)
            b.subscribe("joined-while-down")

            await asyncio.to_thread(redis_server.start)
            await eventually(lambda: a.connected and b.connected)
            await eventually(lambda: _subscribers_equal(redis_server, "joined-while-down", 1))
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await a.publish("room", b"after", False)
            await a.publish("joined-while-down", b"after too", True)
            assert await inbox_b.wait_for(3) == [
                ("room", b"before", False),
                ("room", b"after", False),
                ("joined-while-down", b"after too", True),
            ]
            assert inbox_b.lost == [None]  # b had subscribers through the outage
            assert inbox_a.lost == []  # a had none
        finally:
            await a.close()
            await b.close()

    with caplog.at_level(logging.INFO, logger="fastws.pubsub"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert sum("lost the connection" in line for line in lines) == 2  # one per broker
    assert any("connected to" in line and "2 channel(s) subscribed" in line for line in lines)


def test_start_without_redis_serves_and_connects_later(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose Redis is not there yet starts anyway (publishes fail, retries with
    back-off and a log line per attempt) and connects when Redis comes."""

    async def main() -> None:
        redis_server.kill()
        broker, inbox = await started(redis_server, reconnect_min=0.05, reconnect_max=0.2)
        try:
            assert not broker.connected
            broker.subscribe("room")
            with pytest.raises(PublishError):
                await broker.publish("room", b"nobody", False)
            await eventually(
                lambda: sum("cannot connect" in r.getMessage() for r in caplog.records) >= 3
            )
            await asyncio.to_thread(redis_server.start)
            await eventually(lambda: broker.connected)
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await broker.publish("room", b"hello", True)
            assert await inbox.wait_for(1) == [("room", b"hello", True)]
        finally:
            await broker.close()

    with caplog.at_level(logging.INFO, logger="fastws.pubsub"):
        asyncio.run(main())


def test_close_fails_waiting_publishes_and_leaves_no_connection(
    redis_server: RedisServer,
) -> None:
    """close() ends the broker's tasks and connections: Redis sees no client of it left, and
    publishes still waiting for Redis's reply raise PublishError: none waits forever."""

    async def main() -> None:
        broker, _ = await started(redis_server, timeout=60)
        broker.subscribe("room")
        await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
        assert redis_server.pid is not None
        os.kill(redis_server.pid, signal.SIGSTOP)  # no reply comes while it is stopped
        try:
            in_flight = [asyncio.create_task(broker.publish("room", b"x", False)) for _ in range(3)]
            await asyncio.sleep(0.2)
            assert not any(task.done() for task in in_flight)
            await broker.close()
            async with asyncio.timeout(WAIT):
                outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
            assert all(isinstance(outcome, PublishError) for outcome in outcomes)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        await eventually(lambda: _subscribers_equal(redis_server, "room", 0))
        client = redis.Redis.from_url(redis_server.url)
        try:
            clients = await client.client_list()
            assert len(clients) == 1  # this one
        finally:
            await client.aclose()
        with pytest.raises(PublishError):
            await broker.publish("room", b"closed", False)

    asyncio.run(main())


# -- end to end: fastws servers ("hosts") behind one Redis ---------------------------------------

APP = "tests.pubsub.redis_apps:relay"
HOSTS = ("127.0.0.2", "127.0.0.3")


def start_hosts(start_server: Any, redis_server: RedisServer) -> list[Any]:
    """Two servers, each on its own loopback address with 2 workers, sharing one Redis."""
    return [start_server(app=APP, host=host, workers=2, broker=redis_server.url) for host in HOSTS]


async def connect(stack: contextlib.AsyncExitStack, server: Any) -> tuple[Any, int]:
    """A websockets client of `server` (closed with the stack) and its worker's pid."""
    ws = await stack.enter_async_context(websockets.connect(server.url, max_queue=None))
    return ws, json.loads(await ws.recv())["pid"]


async def command(ws: Any, message: dict[str, Any]) -> Any:
    await ws.send(json.dumps(message))
    return json.loads(await ws.recv())


async def subscribed(
    stack: contextlib.AsyncExitStack, server: Any, count: int, room: str = "room"
) -> tuple[list[Any], set[int]]:
    """`count` clients of `server` subscribed to `room`, and the pids of their workers."""
    clients, pids = [], set()
    for _ in range(count):
        ws, pid = await connect(stack, server)
        assert await command(ws, {"sub": room}) == {"ok": "sub"}
        clients.append(ws)
        pids.add(pid)
    return clients, pids


def test_two_hosts_deliver_to_each_others_subscribers(
    redis_server: RedisServer, start_server: Any
) -> None:
    """Two servers (two "hosts", 2 workers each) behind one Redis: a publish on either host
    reaches every subscriber on both hosts, in every worker, exactly once and in order."""
    hosts = start_hosts(start_server, redis_server)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            clients, pids = [], set()
            for host in hosts:
                host_clients, host_pids = await subscribed(stack, host, 6)
                clients += host_clients
                pids |= host_pids
            # Every worker that holds subscribers has SUBSCRIBEd (once) in Redis.
            await eventually(lambda: _subscribers_equal(redis_server, "room", len(pids)))
            expected = []
            for host, name in zip(hosts, "ab", strict=True):
                publisher, _ = await connect(stack, host)
                answer = await command(publisher, {"pub": "room", "text": name, "count": 20})
                assert answer == {"published": 20, "failed": 0}
                expected += [f"{name}{i}" for i in range(20)]
            answer = await command(publisher, {"pub": "room", "text": "end", "count": 1})
            assert answer == {"published": 1, "failed": 0}
            for ws in clients:
                async with asyncio.timeout(WAIT):
                    received = [await ws.recv() for _ in range(len(expected) + 1)]
                # In order, nothing twice, nothing missing: the marker comes right after.
                assert received == [*expected, "end0"]

    asyncio.run(main())


def test_redis_killed_and_restarted_while_publishing(
    redis_server: RedisServer, start_server: Any
) -> None:
    """Redis killed (by PID) while a client publishes through host A to subscribers on host
    B: both hosts keep serving (echo answers), publishes are reported as failed (to the
    application, as PublishError, and in /metrics), never silently lost; Redis restarted: the
    subscribers that were there during the outage are closed with 1013 (they may have missed
    messages), and delivery resumes for subscribers."""
    host_a, host_b = start_hosts(start_server, redis_server)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            before, pids = await subscribed(stack, host_b, 4)
            await eventually(lambda: _subscribers_equal(redis_server, "room", len(pids)))
            publisher, _ = await connect(stack, host_a)
            results: list[tuple[int, int]] = []  # (published, failed) per batch of 10

            async def publishing() -> None:
                while not stop.is_set():
                    answer = await command(publisher, {"pub": "room", "text": "m", "count": 10})
                    results.append((answer["published"], answer["failed"]))

            stop = asyncio.Event()
            task = asyncio.create_task(publishing())
            try:
                await eventually(lambda: (10, 0) in results)
                redis_server.kill()
                down = len(results)
                await eventually(lambda: any(failed for _, failed in results[down:]))
                # Both hosts keep serving, on new connections and on a subscribed one.
                for host in (host_a, host_b):
                    ws, _ = await connect(stack, host)
                    assert await command(ws, {"echo": "still here"}) == {"echo": "still here"}
                await before[0].send(json.dumps({"echo": "me too"}))

                await asyncio.to_thread(redis_server.start)
                up = len(results)
                await eventually(lambda: (10, 0) in results[up:])
            finally:
                stop.set()
                await task
            # The subscribers of the outage: closed with 1013 once B is back on Redis.
            for ws in before:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    async with asyncio.timeout(WAIT):
                        while True:
                            await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013
            # New subscribers get what is published from now on.
            after, pids = await subscribed(stack, host_b, 4)
            await eventually(lambda: _subscribers_equal(redis_server, "room", len(pids)))
            assert await command(publisher, {"pub": "room", "text": "new", "count": 3}) == {
                "published": 3,
                "failed": 0,
            }
            for ws in after:
                async with asyncio.timeout(WAIT):
                    assert [await ws.recv() for _ in range(3)] == ["new0", "new1", "new2"]
            failed = sum(failed for _, failed in results)
            assert failed > 0
            # Every failure the application saw is counted in host A's /metrics.
            await asyncio.to_thread(
                wait_for,
                lambda: total(metrics(host_a), "fastws_publish_failed_total") == failed,
                WAIT,
                f"fastws_publish_failed_total == {failed}",
            )

    asyncio.run(main())
    host_a.wait_for_log("redis broker: lost the connection")
    host_a.wait_for_log("redis broker: connected to")


def test_a_redis_that_stops_answering_is_detected_by_the_health_check(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The subscription connection is PINGed every health_interval: a healthy Redis keeps the
    session (with and without channels subscribed); a Redis that stops answering (SIGSTOP:
    connections stay open, nothing comes back) fails it within two intervals, publishes fail
    after `timeout`, and the broker is back once Redis answers again (SIGCONT)."""

    async def main() -> None:
        broker, inbox = await started(
            redis_server, health_interval=0.1, timeout=0.5, reconnect_max=0.2
        )
        try:
            await asyncio.sleep(0.5)  # 5 intervals without channels
            broker.subscribe("room")
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await asyncio.sleep(0.5)  # 5 intervals subscribed
            assert broker.connected
            assert not any("lost" in r.getMessage() for r in caplog.records)

            assert redis_server.pid is not None
            os.kill(redis_server.pid, signal.SIGSTOP)
            try:
                await eventually(lambda: not broker.connected)
                with pytest.raises(PublishError):
                    await broker.publish("room", b"frozen", False)
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            await eventually(lambda: broker.connected)
            await eventually(lambda: _subscribers_equal(redis_server, "room", 1))
            await broker.publish("room", b"thawed", False)
            assert (await inbox.wait_for(1))[-1] == ("room", b"thawed", False)
        finally:
            await broker.close()

    with caplog.at_level(logging.INFO, logger="fastws.pubsub"):
        asyncio.run(main())
    assert any("no answer to PING" in r.getMessage() for r in caplog.records)
