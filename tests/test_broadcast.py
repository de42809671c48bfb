"""fastws.broadcast / server.broadcast: one frame for many connections, and slow receivers.

The first tests run a server in this process (`fastws.serve`) so they can look at what each
connection is about to write; the slow-receiver tests run a real server process and read its
/metrics.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import fastws
from fastws.stats import counters
from tests.process.helpers import metrics, total, wait_for
from tests.wire import OP_BINARY, OP_CLOSE, decode_frame, parse_close

TIMEOUT = 10


class Room:
    """An in-process server whose handler keeps every connection in `members` until it
    closes; `start` returns connected `websockets` clients."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.members: list[Any] = []
        self.server: Any = None
        self.joined = asyncio.Event()

    async def handler(self, ws: Any) -> None:
        self.members.append(ws)
        self.joined.set()
        await ws.wait_closed()

    async def connect(self, **kwargs: Any) -> ClientConnection:
        self.joined.clear()
        client = await connect(f"ws://127.0.0.1:{self.server.port}/", **kwargs)
        await asyncio.wait_for(self.joined.wait(), TIMEOUT)
        return client


def pending(ws: Any) -> list[Any]:
    """What a server-side connection will write at the end of this loop iteration."""
    return ws.outbox.queued


def test_one_frame_is_shared_by_every_connection_and_sent_once_each() -> None:
    """broadcast() builds the frame once: every connection's write batch holds the same bytes
    object (a large payload: the same payload object, not a copy); each client receives the
    message once; the return value counts the connections; closed ones are left out."""
    room = Room()

    async def scenario() -> None:
        async with fastws.serve(room.handler, port=0) as server:
            room.server = server
            clients = [await room.connect() for _ in range(4)]
            before = counters.values[counters.MESSAGES_OUT]
            assert fastws.broadcast(room.members, "hello") == 4
            frames = [pending(ws) for ws in room.members]
            assert all(f[0] is frames[0][0] for f in frames)
            big = bytes(range(256)) * 4096  # 1 MiB: header + the payload itself
            assert server.broadcast(room.members, big) == 4
            assert all(pending(ws)[-1] is big for ws in room.members)
            assert counters.values[counters.MESSAGES_OUT] - before == 8
            for client in clients:
                assert await client.recv() == "hello"
                assert await client.recv() == big
            await clients[0].close()
            await room.members[0].wait_closed()
            assert fastws.broadcast(room.members, b"after") == 3
            for client in clients[1:]:
                assert await client.recv() == b"after"
                await client.close()

    asyncio.run(scenario())


def test_compressed_once_per_parameter_set_and_per_connection_with_context_takeover() -> None:
    """With compression allowed to keep context: clients that asked for no server context
    takeover share one compressed frame (RSV1 set); a client with context takeover gets its
    own compressed frame; a client without compression gets the plain frame; a message below
    compression_min_size goes plain to all. Every client decodes every message correctly."""
    room = Room()
    no_takeover = ClientPerMessageDeflateFactory(server_no_context_takeover=True)
    text = json.dumps([{"id": i, "name": "subscriber", "tags": ["a", "b"]} for i in range(40)])

    async def scenario() -> None:
        async with fastws.serve(
            room.handler, port=0, compression="deflate", compression_context_takeover="both"
        ) as server:
            room.server = server
            plain = await room.connect(compression=None)
            shared = [await room.connect(extensions=[no_takeover]) for _ in range(2)]
            takeover = await room.connect()  # websockets' default offer: context takeover
            s_plain, s_shared1, s_shared2, s_takeover = room.members
            assert s_plain.protocol.deflate is None
            assert s_shared1.protocol.deflate.broadcast_key is not None
            assert s_takeover.protocol.deflate.broadcast_key is None
            for message in (text, text, "tiny", text.encode()):
                assert server.broadcast(room.members, message) == 4
                frame_plain = pending(s_plain)[-1]
                frame_shared = pending(s_shared1)[-1]
                assert pending(s_shared2)[-1] is frame_shared
                if message == "tiny":
                    assert frame_shared is frame_plain
                else:
                    assert frame_shared[0] & 0x40 and not frame_plain[0] & 0x40  # RSV1
                    assert len(frame_shared) < len(frame_plain)
                    frame_takeover = pending(s_takeover)[-1]
                    assert frame_takeover[0] & 0x40 and frame_takeover is not frame_shared
                for client in (plain, *shared, takeover):
                    assert await asyncio.wait_for(client.recv(), TIMEOUT) == message
            for client in (plain, *shared, takeover):
                await client.close()

    asyncio.run(scenario())


def test_a_broadcast_waits_for_the_end_of_a_fragmented_message() -> None:
    """A connection in the middle of send_fragments() gets the broadcast message after the
    fragmented message's last frame (RFC 6455 5.4: no interleaving); the others at once."""
    room = Room()
    resume = asyncio.Event()
    sending = asyncio.Event()

    async def parts() -> Any:
        yield "first half, "
        yield "second half"  # sent once the next item is known
        sending.set()
        await resume.wait()
        yield "end"

    async def scenario() -> None:
        async with fastws.serve(room.handler, port=0) as server:
            room.server = server
            busy, idle = await room.connect(), await room.connect()
            task = asyncio.create_task(room.members[0].send_fragments(parts()))
            await asyncio.wait_for(sending.wait(), TIMEOUT)
            assert fastws.broadcast(room.members, "news") == 2
            assert await asyncio.wait_for(idle.recv(), TIMEOUT) == "news"
            resume.set()
            await task
            assert await asyncio.wait_for(busy.recv(), TIMEOUT) == "first half, second halfend"
            assert await asyncio.wait_for(busy.recv(), TIMEOUT) == "news"
            await busy.close()
            await idle.close()

    asyncio.run(scenario())


def test_broadcast_rejects_an_unknown_overflow_policy() -> None:
    with pytest.raises(ValueError, match="overflow"):
        fastws.broadcast([], "x", overflow="drop")


# -- slow receivers, on a real server -------------------------------------------------------

APP = "tests.pubsub.apps:rooms"
SIZE = 64 * 1024
BATCHES, PER_BATCH = 12, 10
REQUEST = (
    "GET /sub/{room} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


def slow_subscriber(port: int, room: str) -> socket.socket:
    """A subscriber with a tiny receive buffer that reads nothing after the handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(REQUEST.format(room=room).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave the frames after it unread
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def read_frames(sock: socket.socket) -> list[Any]:
    """Everything the slow subscriber was sent, until the server closes: decoded frames."""
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    frames = []
    while (decoded := decode_frame(data)) is not None:
        frame, used = decoded
        frames.append(frame)
        data = data[used:]
    return frames


async def publish_batches(server: Any, sock: socket.socket) -> list[list[bytes]]:
    """Publish BATCHES x PER_BATCH binary messages (message i: SIZE bytes of i % 256) while
    three subscribers read everything, batch after batch; return what each received."""
    fast = [await connect(server.url_for("/sub/slow")) for _ in range(3)]
    for client in fast:
        await client.recv()  # {"pid"}: subscribed
    received: list[list[bytes]] = [[] for _ in fast]
    async with connect(server.url) as publisher:
        await publisher.recv()
        for _ in range(BATCHES):
            cmd = {"pub": "slow", "binary": SIZE, "count": PER_BATCH}
            await publisher.send(json.dumps(cmd))
            await asyncio.wait_for(publisher.recv(), TIMEOUT)  # {"ok"}
            for got, client in zip(received, fast, strict=True):
                for _ in range(PER_BATCH):
                    got.append(await asyncio.wait_for(client.recv(), TIMEOUT))
    for client in fast:
        await client.close()
    return received


def expected_batches() -> list[bytes]:
    return [bytes([i % 256]) * SIZE for _ in range(BATCHES) for i in range(PER_BATCH)]


def test_a_slow_subscriber_is_closed_with_1008_and_the_others_get_everything(
    start_server: Any,
) -> None:
    """broadcast_overflow=close (the default): a subscriber that does not read is closed
    with 1008 once it holds more than broadcast_limit unsent; the others receive every
    message meanwhile; /metrics counts one broadcast_closed."""
    server = start_server(app=APP, broadcast_limit="256KiB", close_timeout=30)
    sock = slow_subscriber(server.port, "slow")
    received = asyncio.run(publish_batches(server, sock))
    assert all(got == expected_batches() for got in received)
    frames = read_frames(sock)
    sock.close()
    assert frames[-1].opcode == OP_CLOSE
    assert parse_close(frames[-1])[0] == 1008
    assert 0 < len(frames) - 2 < BATCHES * PER_BATCH  # the {"pid"} text, messages, Close
    wait_for(lambda: total(metrics(server), "fastws_broadcast_closed_total") == 1, 5, "one closed")
    assert "too slow for broadcast: closing 1008" in server.stderr()


def test_a_slow_subscriber_misses_messages_with_skip_and_stays_connected(
    start_server: Any,
) -> None:
    """broadcast_overflow=skip: the subscriber that does not read misses messages (counted in
    /metrics as broadcast_skipped) but stays open; what it did get is intact and in order;
    the others receive every message."""
    server = start_server(
        app=APP, broadcast_limit="256KiB", broadcast_overflow="skip", close_timeout=30
    )
    sock = slow_subscriber(server.port, "slow")
    received = asyncio.run(publish_batches(server, sock))
    assert all(got == expected_batches() for got in received)
    sock.settimeout(1)  # the server does not close it: stop reading when nothing more comes
    frames = read_frames(sock)
    sock.close()
    binary = [f for f in frames if f.opcode == OP_BINARY]
    assert all(f.opcode != OP_CLOSE for f in frames)
    assert 0 < len(binary) < BATCHES * PER_BATCH
    assert all(f.payload == bytes([f.payload[0]]) * SIZE for f in binary)
    skipped = total(metrics(server), "fastws_broadcast_skipped_total")
    wait_for(
        lambda: (
            total(metrics(server), "fastws_broadcast_skipped_total")
            == BATCHES * PER_BATCH - len(binary)
        ),
        5,
        f"skipped counted (last seen {skipped})",
    )
