"""Large binary messages end to end: byte-exact, in their own memory, within a budget.

The server runs as a real process; the clients are the `websockets` library (threads, sync
API) and fastws' own client. Memory is read from /proc of the server process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

import fastws
from tests.conftest import ServerFactory, ServerProcess

MiB = 1 << 20


def _ws(server: ServerProcess) -> Any:
    return ws_connect(
        server.url if hasattr(server, "url") else f"ws://127.0.0.1:{server.port}",
        max_size=None,
        compression=None,
        open_timeout=10,
        close_timeout=10,
    )


def worker_pid(server: ServerProcess) -> int:
    """The one worker process of a server started with workers=1 (the master forks it)."""
    others = [pid for pid in server.pids() if pid != server.pid]
    return others[0] if len(others) == 1 else server.pid


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.parametrize("size", [1 * MiB, 16 * MiB, 256 * MiB])
def test_binary_echo_is_byte_exact_websockets_client(
    start_server: ServerFactory, size: int
) -> None:
    """1 MiB, 16 MiB, 256 MiB messages from the websockets client come back identical."""
    server = start_server(max_message_size="512MiB")
    payload = os.urandom(size)
    with _ws(server) as ws:
        ws.send(payload)
        echoed = ws.recv()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


def test_fragmented_64mib_message_is_reassembled(start_server: ServerFactory) -> None:
    """A 64 MiB message sent as 64 fragments of 1 MiB comes back whole and byte-exact."""
    server = start_server(max_message_size="128MiB")
    payload = os.urandom(64 * MiB)
    with _ws(server) as ws:
        ws.send([payload[i : i + MiB] for i in range(0, len(payload), MiB)])
        echoed = ws.recv()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("size", [1 * MiB, 16 * MiB])
def test_binary_echo_is_byte_exact_fastws_client(start_server: ServerFactory, size: int) -> None:
    """The same with fastws' client, plus a fragmented message from it."""
    server = start_server()
    payload = os.urandom(size)

    async def main() -> None:
        async with fastws.connect(f"ws://127.0.0.1:{server.port}") as ws:
            await ws.send(payload)
            assert await ws.recv() == payload
            await ws.send_fragments([payload[: size // 3], payload[size // 3 :]])
            message = await ws.recv_message()
            assert isinstance(message, fastws.Message) and message == payload

    asyncio.run(main())


def test_next_message_hands_over_what_was_received(start_server: ServerFactory) -> None:
    """next_message() (the adapters' receive, e.g. fastws.asgi) gives text as str, a small
    binary message as its bytes and a large one as the zero-copy Message, unconverted."""
    server = start_server()
    large = os.urandom(2 * MiB)

    async def main() -> None:
        async with fastws.connect(f"ws://127.0.0.1:{server.port}") as ws:
            for sent in ("héllo", b"\x00small", large):
                await ws.send(sent)
                got = await ws.next_message()
                if sent is large:
                    assert isinstance(got, fastws.Message) and got == large
                    got.release()
                else:
                    assert type(got) is type(sent) and got == sent

    asyncio.run(main())


def test_fastws_client_sending_large_messages_back_to_back(start_server: ServerFactory) -> None:
    """fastws' client masks large payloads into a buffer it reuses once the transport has
    written the last one: 14 different messages sent back to back to a server that reads
    slowly (so the last one is often still being written when the next is masked), no echo
    awaited in between: all come back intact and in order. Also: while its own writes wait,
    the client goes on reading the echoes (a client that stopped reading too would wait for
    the server while the server waits for it)."""
    server = start_server(app="tests.apps:slow_echo", max_message_size="4MiB", max_queue=1)
    # The 2 MiB messages fill the kernel's buffers (the server reads slowly), so each 40 KB
    # message after them waits in the client's transport, below write_limit: send() returns
    # and the next one must not be masked into the buffer that is still being written.
    payloads = [os.urandom(2 * MiB) for _ in range(6)] + [os.urandom(40_000) for _ in range(8)]

    async def main() -> None:
        url = f"ws://127.0.0.1:{server.port}"
        async with asyncio.timeout(60), fastws.connect(url, max_message_size=4 * MiB) as ws:
            for payload in payloads:
                await ws.send(payload)
            for payload in payloads:
                echoed = await ws.recv()
                assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

    asyncio.run(main())


def test_send_with_release_echoes_intact_and_releases_the_message(
    start_server: ServerFactory,
) -> None:
    """`send(message, release=True)` (what the echo app does): the message goes out intact
    although it is released as soon as the transport has it (the transport's hold keeps
    the pages until written), and it is released when send() returns."""
    server = start_server(app="tests.apps:echo_release_report")
    payloads = [os.urandom(size) for size in (2 * MiB, 16 * MiB, 2 * MiB)]
    with _ws(server) as ws:
        for payload in payloads:
            ws.send(payload)
            assert hashlib.sha256(ws.recv()).digest() == hashlib.sha256(payload).digest()
            assert json.loads(ws.recv()) == {"released": True}


def test_256mib_message_is_received_in_place(start_server: ServerFactory) -> None:
    """Receiving one 256 MiB message: it lands in its own region (zero_copy), the server's
    peak RSS stays below 1.25x the message, and release() gives the memory back at once."""
    server = start_server(app="tests.apps:digest", max_message_size="512MiB", workers=1)
    payload = os.urandom(256 * MiB)
    with _ws(server) as ws:
        ws.send("ready?")
        assert ws.recv() == "ready?"
        pid = worker_pid(server)
        baseline = _vm_kib(pid, "VmHWM") * 1024
        ws.send(payload)
        report = json.loads(ws.recv())
    assert report["size"] == len(payload)
    assert report["sha256"] == hashlib.sha256(payload).hexdigest()
    assert report["zero_copy"] is True
    peak = _vm_kib(pid, "VmHWM") * 1024 - baseline
    assert peak < 1.25 * len(payload), f"peak RSS grew {peak / MiB:.0f} MiB for 256 MiB"
    released = (report["rss_held"] - report["rss_after"]) * 1024
    assert released > 0.9 * len(payload), f"release() returned only {released / MiB:.0f} MiB"


def test_many_large_uploads_stay_within_the_memory_budget(start_server: ServerFactory) -> None:
    """8 clients send 256 MiB each at once to a server with a 512 MiB budget: every message
    arrives intact, and the server's peak RSS stays within the budget plus slack (the others
    wait, not reading, while two messages hold the budget)."""
    budget = 512 * MiB
    server = start_server(
        app="tests.apps:digest", max_message_size="256MiB", max_message_memory=budget, workers=1
    )
    payload = os.urandom(256 * MiB)
    expected = hashlib.sha256(payload).hexdigest()
    with _ws(server) as ws:  # make sure the worker is up before reading its baseline
        ws.send("ready?")
        assert ws.recv() == "ready?"
    pid = worker_pid(server)
    baseline = _vm_kib(pid, "VmHWM") * 1024
    results: list[Any] = []

    def upload() -> None:
        try:
            with _ws(server) as ws:
                ws.send(payload)
                results.append(json.loads(ws.recv(timeout=120)))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert len(results) == 8, results
    assert all(isinstance(r, dict) and r["sha256"] == expected for r in results), results
    peak = _vm_kib(pid, "VmHWM") * 1024 - baseline
    assert peak < budget + 96 * MiB, f"peak RSS grew {peak / MiB:.0f} MiB, budget 512 MiB"


@pytest.mark.parametrize(("offset", "count"), [(0, None), (4097, 3 * MiB), (5 * MiB, None)])
def test_send_file_sends_the_file_range(
    start_server: ServerFactory, tmp_path: Any, offset: int, count: int | None
) -> None:
    """ws.send_file(path, offset, count) sends exactly that range as one binary message."""
    data = os.urandom(5 * MiB)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    server = start_server(app="tests.apps:send_file_from_query")
    query = f"path={path}&offset={offset}" + (f"&count={count}" if count is not None else "")
    with ws_connect(f"ws://127.0.0.1:{server.port}/?{query}", max_size=None) as ws:
        received = ws.recv()
    end = len(data) if count is None else offset + count
    assert received == data[offset:end]


def test_streamed_upload_is_never_held_whole(start_server: ServerFactory) -> None:
    """A 96 MiB upload read with ws.stream() arrives intact in pieces of at most 1 MiB, and
    the server's peak RSS grows by a small fraction of it (it is never held whole)."""
    server = start_server(
        app="tests.apps:stream_digest", max_message_size="512MiB", max_queue=4, workers=1
    )
    payload = os.urandom(96 * MiB)
    with _ws(server) as ws:
        ws.send("warm-up")
        baseline = json.loads(ws.recv())["rss_peak"] * 1024
        ws.send(payload)
        report = json.loads(ws.recv(timeout=120))
        ws.send([payload[: 3 * MiB], payload[3 * MiB : 5 * MiB]])  # fragmented
        fragmented = json.loads(ws.recv(timeout=60))
    assert report["size"] == len(payload)
    assert report["sha256"] == hashlib.sha256(payload).hexdigest()
    assert report["pieces"] >= 96 and report["largest"] <= MiB
    grown = report["rss_peak"] * 1024 - baseline
    assert grown < 32 * MiB, f"peak RSS grew {grown / MiB:.0f} MiB streaming 96 MiB"
    assert fragmented["sha256"] == hashlib.sha256(payload[: 5 * MiB]).hexdigest()


def test_abandoned_stream_is_skipped(start_server: ServerFactory) -> None:
    """Leaving ws.stream() after the first piece discards the rest of that message: the next
    recv() returns the next message, whole."""
    server = start_server(app="tests.apps:abandon_stream")
    with _ws(server) as ws:
        ws.send(os.urandom(5 * MiB))
        ws.send(b"x" * 1234)
        report = json.loads(ws.recv(timeout=30))
    assert 0 < report["first"] <= MiB
    assert report["next"] == 1234
