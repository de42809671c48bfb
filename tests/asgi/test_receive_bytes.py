"""Large binary messages delivered to an ASGI application as `bytes` (fastws/asgi/websocket.py
with fastws.assembler.BytesAssembler): a message in one frame is received straight into the
bytes object delivered, a fragmented one grows in it (no region mapped, no copy at
delivery), a compressed one is inflated as before; every limit holds, and the memory budget
is charged until the application gets the message. Real server processes, the `websockets`
client and raw frames."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import struct
import subprocess
import sys
from typing import Any

import pytest
import websockets

from tests.wire import WireClient, encode_frame

MiB = 1 << 20
APP = "tests.asgi.apps:starlette_app"


@pytest.fixture(scope="module")
def server(start_module_server: Any) -> Any:
    """One worker of its own (its budget and region cache are what the tests read)."""
    return start_module_server(APP, workers=1, max_message_size="4MiB", compression="off")


@pytest.fixture(scope="module")
def deflate_server(start_module_server: Any) -> Any:
    return start_module_server(APP, workers=1, max_message_size="4MiB", compression="deflate")


def url(server: Any) -> str:
    return f"ws://{server.host}:{server.port}/received"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def exchange(server: Any, *messages: Any, compression: str | None = None) -> list[Any]:
    """Send each message (a list: its fragments); the app's reports (none for wait-held)."""
    reports = []
    async with websockets.connect(url(server), max_size=None, compression=compression) as ws:
        for i, message in enumerate(messages):
            await ws.send(message)
            if isinstance(message, str) and message.startswith("wait-held"):
                rest = messages[i + 1 :]  # all sent first: the app waits for them
                for later in rest:
                    await ws.send(later)
                return reports + [json.loads(await ws.recv()) for _ in rest]
            reports.append(json.loads(await ws.recv()))  # one at a time: nothing else held
    return reports


def test_one_frame_is_received_into_the_bytes_delivered(server: Any) -> None:
    """Messages in one frame (3 MiB, above the region size; 300 KB, below it) arrive as
    bytes, whole, with nothing held after delivery and no region mapped for them: the
    bytes are where the payload was received (before, a region then a copy)."""
    big, medium = os.urandom(3 * MiB), os.urandom(300_000)
    reports = asyncio.run(exchange(server, "gc", big, medium))
    assert reports[1:] == [
        {"type": "bytes", "size": len(data), "sha256": digest(data), "held": 0, "cached": 0}
        for data in (big, medium)
    ]


def test_fragmented_text_and_at_the_limit(server: Any) -> None:
    """A fragmented message (its size unknown until its last fragment: grown in the bytes
    delivered, no region mapped), a 2 MiB text message, and one of exactly max_message_size
    arrive whole and with nothing held after."""
    parts = [os.urandom(n) for n in (200_000, 1_500_000, 700_000)]
    text = "é" * MiB
    limit = os.urandom(4 * MiB)
    reports = asyncio.run(exchange(server, "gc", parts, text, limit))[1:]
    expected = [("bytes", b"".join(parts)), ("str", text.encode()), ("bytes", limit)]
    assert [(r["type"], r["size"], r["sha256"], r["held"]) for r in reports] == [
        (kind, len(data), digest(data), 0) for kind, data in expected
    ]
    assert reports[0]["cached"] == 0  # no region: the fragments grew in the bytes


def _chromium_frames(data: bytes, size: int = 131_000, empty_last: bool = False) -> list[bytes]:
    """`data` as Chromium sends a large ArrayBuffer: BINARY then CONTINUATION frames of
    131,000 payload bytes, each masked under its own key (written one frame per write);
    `empty_last`: then an empty final CONTINUATION."""
    frames = []
    for i in range(0, len(data), size):
        fin = i + size >= len(data) and not empty_last
        frames.append(encode_frame(0 if i else 2, data[i : i + size], fin=fin, mask=True))
    if empty_last:
        frames.append(encode_frame(0, b"", fin=True, mask=True))
    return frames


@pytest.mark.parametrize("empty_last", [False, True])
def test_chromium_fragments_arrive_whole(server: Any, empty_last: bool) -> None:
    """Chromium's shape, frame by frame on the wire: 131,000-byte fragments (and a final
    empty one) arrive as the whole message's bytes, with nothing held or cached after."""
    data = os.urandom(3 * MiB + 777)
    with WireClient(server.port, server.host) as client:
        client.handshake("/received")
        client.send_text("gc")
        client.recv_message()
        for frame in _chromium_frames(data, empty_last=empty_last):
            client.send_raw(frame)
        _, payload = client.recv_message()
    report = json.loads(payload)
    assert (report["type"], report["size"], report["sha256"]) == ("bytes", len(data), digest(data))
    assert (report["held"], report["cached"]) == (0, 0)


def test_fragments_over_the_limit_close_1009_and_give_the_memory_back(server: Any) -> None:
    """Fragments that take a message past max_message_size (4 MiB) close the connection
    with 1009; what they had received is given back to the budget."""
    with WireClient(server.port, server.host) as client:
        client.handshake("/received")
        for frame in _chromium_frames(os.urandom(5 * MiB))[:-1]:  # no final fragment
            try:
                client.send_raw(frame)
            except OSError:  # the server closed while we were still sending
                break
        assert client.expect_close(1009)[0] == 1009
    (report,) = asyncio.run(exchange(server, "gc", b"x"))[1:]
    assert report["held"] == 0


def test_compressed_message(deflate_server: Any) -> None:
    """permessage-deflate: a compressed 3 MiB message (inflated, not received in place)
    arrives as bytes, whole."""
    data = os.urandom(MiB) * 3
    (report,) = asyncio.run(exchange(deflate_server, data, compression="deflate"))
    assert (report["type"], report["size"], report["sha256"]) == ("bytes", len(data), digest(data))


def test_over_the_limit_closes_1009_and_gives_the_memory_back(server: Any) -> None:
    """A frame over max_message_size closes the connection with 1009 before any of it is
    received; the budget holds nothing afterwards."""

    with WireClient(server.port, server.host) as client:
        client.handshake("/received")
        header = bytes([0x82, 0xFF]) + struct.pack("!Q", 4 * MiB + 1) + os.urandom(4)
        client.send_raw(header + b"x" * 100_000)  # declared over the limit, partly sent
        assert client.expect_close(1009)[0] == 1009
    (report,) = asyncio.run(exchange(server, "gc", b"x"))[1:]
    assert report["held"] == 0


def test_the_budget_is_charged_until_the_app_gets_the_message(server: Any) -> None:
    """Two 2 MiB messages wait unread: both are charged to the worker's budget; each charge
    goes back when the application receives its message, and the charge of messages the
    application never read goes back when they are dropped."""
    a, b = os.urandom(2 * MiB), os.urandom(2 * MiB)
    reports = asyncio.run(exchange(server, f"wait-held {4 * MiB}", a, b))
    assert [(r["sha256"], r["held"]) for r in reports] == [(digest(a), 2 * MiB), (digest(b), 0)]

    async def leave() -> None:
        async with websockets.connect(url(server), max_size=None) as ws:
            for message in (f"leave-held {4 * MiB}", a, b):
                await ws.send(message)
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()

    asyncio.run(leave())
    (report,) = asyncio.run(exchange(server, "gc", b"x"))[1:]
    assert report["held"] == 0


_HEAP_AFTER_FREES = """
import ctypes, sys
from fastws.asgi.app import _keep_malloc_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
_keep_malloc_memory(int(sys.argv[1]))
blocks = [bytearray(20 << 20) for _ in range(5)]  # 100 MiB of heap, then all of it freed
del blocks
print(libc.mallinfo2().arena)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt",
)
def test_a_worker_keeps_buffer_cache_of_freed_heap() -> None:
    """What a worker serving bytes tells malloc keeps `buffer_cache` bytes of freed heap,
    not only when to trim it: past M_TRIM_THRESHOLD glibc trims down to M_TOP_PAD, so
    without it four 16 MiB messages in Chromium's fragments (a ~100 MiB heap) went back to
    the OS after every round and were faulted in again (4,088 faults, 9.5 ms per message
    against 0 and 2.2 ms). A process of its own: mallopt is process-wide."""
    keep = 64 * MiB
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 (glibc 2.33 on)
    except AttributeError:
        pytest.skip("no mallinfo2")
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_AFTER_FREES, str(keep)],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert int(out.stdout) >= keep
