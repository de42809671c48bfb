"""Channels across hosts: a `Broker` over Redis pub/sub (`--broker redis://host:port/db`).

Each worker keeps two connections to Redis, made with redis-py (hiredis parses when installed):

- a subscription connection: `SUBSCRIBE <prefix><channel>` when the worker gains its first
  subscriber on a channel, `UNSUBSCRIBE` when it loses its last one; one task reads it and
  hands every message to the hub's `deliver` on the worker's loop. Every worker subscribes
  for itself, so workers of one host need no shared ring when Redis carries the channels.
- a publish connection: one writer task sends the `PUBLISH`es that are waiting, pipelined, and
  matches the replies to them in order. One connection per worker keeps each publisher's
  order (Redis delivers in the order it receives on a connection).

Both use redis-py's `Connection` directly rather than its `PubSub` and `Redis` objects: this
module owns reconnection (its own back-off, log lines, re-subscription, publish failures),
which those objects would otherwise do behind its back with their own retries.

Wire format: a Redis message is one flag byte then the payload: `T` text (UTF-8), `B` binary.
Anything may publish to a fastws channel, e.g. `redis-cli PUBLISH fastws:room 'Thello'`.
A message without a valid flag, or text that is not UTF-8, is dropped with a log line (never
sent to clients as a corrupt frame).

Failure: when a connection to Redis fails, both are closed and opened again after a back-off
(`reconnect_min` doubling to `reconnect_max`, with jitter), then every channel is subscribed
again. Meanwhile `publish` raises `PublishError` at once, and a publish that was in flight when
the connection failed raises it too (it may or may not have reached Redis). Messages others
published while this worker was disconnected are not replayed: Redis pub/sub keeps nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from redis.asyncio.connection import AbstractConnection, ConnectionPool
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"a redis:// broker needs the redis package: pip install 'fastws[redis]' ({exc})"
    ) from exc

from .broker import Deliver, Lost, PublishError

__all__ = ["BINARY", "TEXT", "RedisBroker"]

logger = logging.getLogger("fastws.pubsub")

#: The flag byte in front of each payload in Redis.
TEXT = b"T"
BINARY = b"B"

#: Failures that mean "the connection to Redis is gone" (a socket error, a timeout, EOF).
_CONNECTION_ERRORS = (RedisError, OSError, EOFError)


def redacted(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class RedisBroker:
    """Publishes to and delivers from Redis pub/sub channels named `prefix + channel`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fastws:",
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        timeout: float = 5.0,
        health_interval: float = 10.0,
    ) -> None:
        """`timeout` bounds connecting and each publish's reply; a late reply fails the
        session (and the publishes in flight) like a broken connection. The subscription
        connection is PINGed every `health_interval` seconds while connected: no answer by
        the next one fails the session too (a peer gone without a FIN or RST)."""
        self.url = url
        self.prefix = prefix
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.health_interval = health_interval
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
            "retry": None,  # no retries inside redis-py: this class reconnects
            # RESP2: pub/sub messages are plain replies of read_response() (RESP3 would route
            # them to a push handler); every Redis version speaks it.
            "protocol": 2,
        }
        # The subscription connection waits for messages without a timeout; publishes don't.
        self._sub_pool = ConnectionPool.from_url(url, socket_timeout=None, **options)
        self._pub_pool = ConnectionPool.from_url(url, socket_timeout=timeout, **options)
        self._deliver: Deliver | None = None
        self._lost_callback: Lost | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The current session (both connections), or None while disconnected.
        self._up = False
        self._sub: AbstractConnection | None = None
        self._pub: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost_reason: BaseException | None = None
        # Channels this worker has subscribers on; those SUBSCRIBEd on the current session.
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        # Redis channel name -> fastws channel name, for the channels subscribed.
        self._names: dict[bytes, str] = {}
        # Publishes waiting for the writer: (Redis channel, data, future of the reply).
        self._queue: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._dropped = 0
        # Health check: when the last PING was sent and the last pong came (loop time).
        self._ping_sent = 0.0
        self._pong = 0.0

    # -- the Broker interface ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether both connections to Redis are up (publishes can be handed over)."""
        return self._up

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        """Connect once now (so a worker starts with Redis when it is there); when Redis is
        not there, start anyway and keep trying in the background."""
        self._deliver = deliver
        self._lost_callback = lost
        delay: float | None = None
        try:
            await self._open()
        except _CONNECTION_ERRORS as exc:
            delay = self._next_delay(None)
            logger.warning(
                "redis broker: cannot connect to %s (%s); retrying in %.1f s, publishes fail "
                "until then",
                redacted(self.url),
                _reason(exc),
                delay,
            )
        self._task = asyncio.get_running_loop().create_task(self._run(delay))

    async def publish(self, channel: str, payload: bytes | memoryview, text: bool) -> None:
        if not self._up:
            raise PublishError(f"redis broker: not connected to {redacted(self.url)}")
        data = b"".join((TEXT if text else BINARY, payload))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(((self.prefix + channel).encode(), data, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        await future

    def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        self._names[(self.prefix + channel).encode()] = channel
        self._schedule_sync()

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._schedule_sync()

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._task, self._reader, self._sync_task, self._writer) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *_CONNECTION_ERRORS):
                await task
        await self._drop(PublishError("redis broker: closed"))

    # -- the session: connect, subscribe, read ------------------------------------------------

    async def _open(self) -> None:
        """Connect both connections and subscribe to every wanted channel."""
        sub = self._sub_pool.make_connection()
        pub = self._pub_pool.make_connection()
        try:
            await sub.connect()
            await pub.connect()
            self._subscribed = set(self._wanted)
            if self._subscribed:
                await sub.send_command("SUBSCRIBE", *self._redis_names(self._subscribed))
        except BaseException:
            await _disconnect(sub, pub)
            raise
        self._sub, self._pub = sub, pub
        self._up = True
        if self._wanted and self._lost_callback is not None:
            # Messages published while this worker had no session were missed: tell the hub
            # (once per outage, now that subscribers can resynchronise).
            self._lost_callback(None)
        self._ping_sent = self._pong = asyncio.get_running_loop().time()
        self._reader = asyncio.get_running_loop().create_task(self._read(sub))
        logger.info(
            "redis broker: connected to %s, %d channel(s) subscribed",
            redacted(self.url),
            len(self._subscribed),
        )
        self._schedule_sync()  # channels gained or lost while connecting

    async def _run(self, delay: float | None) -> None:
        """Keep a session up: wait for it to fail, back off, open a new one."""
        while not self._closing:
            if delay is not None:
                await asyncio.sleep(delay)
                try:
                    await self._open()
                except _CONNECTION_ERRORS as exc:
                    delay = self._next_delay(delay)
                    logger.warning(
                        "redis broker: cannot connect to %s (%s); retrying in %.1f s",
                        redacted(self.url),
                        _reason(exc),
                        delay,
                    )
                    continue
            await self._watch()
            if self._closing:
                return
            reason = self._lost_reason or _task_error(self._reader)
            await self._drop(PublishError(f"redis broker: connection lost ({_reason(reason)})"))
            delay = self._next_delay(None)
            logger.warning(
                "redis broker: lost the connection to %s (%s); reconnecting in %.1f s, "
                "publishes fail until then",
                redacted(self.url),
                _reason(reason),
                delay,
            )

    async def _watch(self) -> None:
        """Return when the session's reader ends: its connection failed, or `_lost()`
        cancelled it. Meanwhile PING every `health_interval` and expect the pong by the next."""
        reader, sub = self._reader, self._sub
        assert reader is not None and sub is not None
        while not reader.done():
            await asyncio.wait({reader}, timeout=self.health_interval)
            if reader.done():
                break
            if self._pong < self._ping_sent:
                self._lost(TimeoutError(f"no answer to PING in {self.health_interval} s"))
                continue
            try:
                self._ping_sent = asyncio.get_running_loop().time()
                await sub.send_command("PING")
            except _CONNECTION_ERRORS as exc:
                self._lost(exc)

    async def _read(self, sub: AbstractConnection) -> None:
        """Hand every message of the subscription connection to `deliver`, until it fails."""
        try:
            await self._read_messages(sub)
        except BaseException:
            self._up = False  # publishes fail from now on, not only once the session is dropped
            raise

    async def _read_messages(self, sub: AbstractConnection) -> None:
        while True:
            reply = await sub.read_response()
            # [b"message", channel, data]; also [b"subscribe" / b"unsubscribe", channel, n].
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self._on_message(reply[1], reply[2])
            elif reply == b"PONG" or (isinstance(reply, list) and reply and reply[0] == b"pong"):
                # (b"PONG" while subscribed to nothing, [b"pong", b""] in subscribed mode)
                self._pong = asyncio.get_running_loop().time()

    def _on_message(self, name: bytes, data: bytes) -> None:
        channel = self._names.get(name)
        if channel is None or channel not in self._wanted:
            return  # a message that crossed our UNSUBSCRIBE
        flag = data[:1]
        payload = memoryview(data)[1:]
        if flag == TEXT:
            try:
                str(payload, "utf-8")
            except UnicodeDecodeError:
                self._drop_message(channel, "text that is not UTF-8")
                return
        elif flag != BINARY:
            self._drop_message(channel, f"no text/binary flag (first byte {flag!r})")
            return
        assert self._deliver is not None
        try:
            self._deliver(channel, payload, flag == TEXT)
        except Exception:
            logger.exception("redis broker: delivering a message on %r failed", channel)

    def _drop_message(self, channel: str, why: str) -> None:
        """Count a malformed message; log the first and then every 1,000th."""
        self._dropped += 1
        if self._dropped % 1000 == 1:
            logger.warning(
                "redis broker: dropped a message on channel %r: %s (%d dropped so far); "
                "fastws messages are b'T' + UTF-8 text or b'B' + bytes",
                channel,
                why,
                self._dropped,
            )

    # -- subscriptions ---------------------------------------------------------------------

    def _schedule_sync(self) -> None:
        if self._sub is not None and (self._sync_task is None or self._sync_task.done()):
            self._sync_task = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        """SUBSCRIBE / UNSUBSCRIBE until the session's channels are the wanted ones."""
        sub = self._sub
        while self._up and sub is not None and sub is self._sub and sub.is_connected:
            gained = self._wanted - self._subscribed
            lost = self._subscribed - self._wanted
            if not gained and not lost:
                return
            self._subscribed = set(self._wanted)
            try:
                if gained:
                    await sub.send_command("SUBSCRIBE", *self._redis_names(gained))
                if lost:
                    await sub.send_command("UNSUBSCRIBE", *self._redis_names(lost))
            except _CONNECTION_ERRORS as exc:
                self._lost(exc)
                return
            for channel in lost:
                if channel not in self._wanted:
                    self._names.pop((self.prefix + channel).encode(), None)

    def _redis_names(self, channels: Iterable[str]) -> list[bytes]:
        return [(self.prefix + channel).encode() for channel in channels]

    # -- publishing --------------------------------------------------------------------------

    async def _write(self) -> None:
        """Send the waiting publishes in one pipeline, then match the replies in order; again
        until none wait."""
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                pub = self._pub
                if not self._up or pub is None or not pub.is_connected:
                    # (never send on a closed redis-py connection: it would reconnect by itself)
                    _fail(batch, PublishError("redis broker: connection lost"))
                    continue
                try:
                    await pub.send_packed_command(
                        pub.pack_commands([("PUBLISH", name, data) for name, data, _ in batch]),
                        check_health=False,
                    )
                    for _name, _data, future in batch:
                        try:
                            await pub.read_response()
                        except ResponseError as exc:  # an error reply (e.g. an ACL's NOPERM)
                            if not future.done():
                                future.set_exception(PublishError(f"redis broker: {exc}"))
                        else:
                            if not future.done():
                                future.set_result(None)
                except _CONNECTION_ERRORS as exc:
                    _fail(batch, PublishError(f"redis broker: connection lost ({_reason(exc)})"))
                    self._lost(exc)
                    return
                except BaseException as exc:  # cancelled by close(), or a bug: nobody waits forever
                    _fail(batch, PublishError(f"redis broker: publish interrupted ({exc!r})"))
                    self._lost(exc)
                    raise
        finally:
            self._writer = None

    # -- failure -----------------------------------------------------------------------------

    def _lost(self, reason: BaseException) -> None:
        """A connection failed: end the session (the supervisor backs off and reconnects)."""
        self._up = False
        if self._reader is not None and not self._reader.done():
            self._lost_reason = reason
            self._reader.cancel()

    async def _drop(self, failure: PublishError) -> None:
        """Close the session's connections; fail the publishes still waiting."""
        sub, pub = self._sub, self._pub
        self._up = False
        self._sub = self._pub = None
        self._lost_reason = None
        queue, self._queue = self._queue, []
        _fail(queue, failure)
        await _disconnect(*(c for c in (sub, pub) if c is not None))

    def _next_delay(self, delay: float | None) -> float:
        """The next back-off: doubles up to `reconnect_max`, jittered (workers spread out)."""
        base = self.reconnect_min if delay is None else min(delay * 2, self.reconnect_max)
        return base * random.uniform(0.8, 1.0)


def _fail(batch: list[tuple[bytes, bytes, asyncio.Future[None]]], failure: PublishError) -> None:
    for _name, _data, future in batch:
        if not future.done():
            future.set_exception(failure)


async def _disconnect(*connections: AbstractConnection) -> None:
    for connection in connections:
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)


def _task_error(task: asyncio.Task[Any] | None) -> BaseException | None:
    if task is None or task.cancelled():
        return None
    return task.exception()


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown reason"
    return str(exc) or type(exc).__name__
