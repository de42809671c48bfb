"""permessage-deflate (RFC 7692) end to end: a real server process, the `websockets` client.

What is agreed for each offer and server setting, byte-exact echoes of compressible and random
messages from 0 B to 16 MiB (whole and fragmented) under each context-takeover combination,
and a decompression bomb that must cost the server neither its memory nor its other clients.
"""

from __future__ import annotations

import os
import random
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from fastws.protocol.deflate import Agreement
from tests.wire import OP_BINARY, OP_TEXT, RSV1, TIMEOUT, WireClient, encode_frame

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

MiB = 1 << 20
TAKEOVER = ["none", "server", "client", "both"]


def connect(server: ServerProcess, **options: Any) -> ClientConnection:
    """websockets' sync client offering permessage-deflate, no size limit, bounded waits."""
    defaults: dict[str, Any] = {
        "compression": "deflate",
        "proxy": None,
        "open_timeout": TIMEOUT,
        "close_timeout": TIMEOUT,
        "ping_interval": None,
        "max_size": None,
    }
    return sync_connect(server.url, **{**defaults, **options})


def agreed(ws: ClientConnection) -> str | None:
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def offer(**params: Any) -> list[ClientPerMessageDeflateFactory]:
    return [ClientPerMessageDeflateFactory(**params)]


@pytest.fixture(scope="module")
def deflate_server(start_module_server: ServerFactory) -> ServerProcess:
    return start_module_server(compression="deflate", max_message_size="16MiB")


# -- negotiation ---------------------------------------------------------------------------


def test_compression_is_off_by_default(echo_server: ServerProcess) -> None:
    """Without --compression the offer goes unanswered and messages flow uncompressed."""
    with connect(echo_server) as ws:
        assert agreed(ws) is None
        ws.send("x" * 1000)
        assert ws.recv(timeout=TIMEOUT) == "x" * 1000


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # websockets' (and Chromium's) default offer: client_max_window_bits, no value.
        (
            {"client_max_window_bits": True},
            "server_no_context_takeover; client_no_context_takeover",
        ),
        ({}, "server_no_context_takeover; client_no_context_takeover"),
        (
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            "server_no_context_takeover; client_no_context_takeover",
        ),
        (
            {"server_max_window_bits": 10},
            "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
        ),
        (
            {"client_max_window_bits": 9},
            "server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9",
        ),
    ],
)
def test_negotiation(deflate_server: ServerProcess, params: dict[str, Any], expected: str) -> None:
    """Each parameter of the offer gets the RFC 7692 7.1 answer, and messages then flow."""
    with connect(deflate_server, compression=None, extensions=offer(**params)) as ws:
        assert agreed(ws) == f"permessage-deflate; {expected}"
        for message in ("é" * 5000, os.urandom(5000), "short"):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


@pytest.mark.parametrize(
    "header",
    [
        "permessage-deflate; foo=1",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=07",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=yes",
    ],
)
def test_bad_offer_is_declined_and_connection_works(
    deflate_server: ServerProcess, header: str
) -> None:
    """RFC 7692 5: a bad offer is declined (no extension in the 101), not an error."""
    with WireClient(deflate_server.port) as client:
        response = client.handshake(headers={"Sec-WebSocket-Extensions": header})
        assert "sec-websocket-extensions" not in response.headers
        client.echo(OP_TEXT, b"x" * 1000)  # uncompressed: recv_frame checks RSV1 is clear


def test_fallback_offer_is_accepted(deflate_server: ServerProcess) -> None:
    """Several offers in one header: the first acceptable one is agreed."""
    with WireClient(deflate_server.port) as client:
        response = client.handshake(
            headers={
                "Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=8,"
                " permessage-deflate; client_max_window_bits=12"
            }
        )
        assert response.headers["sec-websocket-extensions"] == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " client_max_window_bits=12"
        )


def test_rsv1_on_continuation_fails_1002(deflate_server: ServerProcess) -> None:
    """RFC 7692 6: RSV1 on a non-first fragment MUST fail the connection."""
    with WireClient(deflate_server.port) as client:
        client.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        body = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = body.compress(b"abc" * 100) + body.flush(zlib.Z_SYNC_FLUSH)
        client.send_frame(OP_BINARY, data, fin=False, rsv=RSV1)
        client.send_frame(0, data, rsv=RSV1)
        client.expect_close(1002)


def test_fastws_client_negotiates_with_both_servers(deflate_server: ServerProcess) -> None:
    """fastws.connect(compression=...) agrees with our server and with the websockets server,
    with and without context takeover, and messages round-trip."""
    import asyncio

    from websockets.asyncio.server import serve

    import fastws
    from fastws.protocol.deflate import DeflateOptions

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def exchange(url: str, compression: Any) -> Agreement | None:
        async with fastws.connect(url, compression=compression) as ws:
            for message in ("x" * 5000, os.urandom(3000), "short", "y" * 100_000, "x" * 5000):
                await ws.send(message)
                assert await ws.recv() == message
            deflate = ws.protocol.deflate
            return None if deflate is None else deflate.agreement

    async def main() -> None:
        takeover = DeflateOptions(
            window_bits=10, server_context_takeover=True, client_context_takeover=True
        )
        assert await exchange(deflate_server.url, "deflate") == Agreement(True, True)
        # Our server imposes no takeover on a client that would allow it.
        assert await exchange(deflate_server.url, takeover) == Agreement(True, True, 10, 10)
        async with serve(echo, "127.0.0.1", 0, compression="deflate", max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/"
            assert await exchange(url, "deflate") == Agreement(True, True, 12, 12)
            assert await exchange(url, takeover) == Agreement(False, False, 10, 10)

    asyncio.run(main())


# -- round trips ---------------------------------------------------------------------------


def _messages() -> list[str | bytes]:
    rng = random.Random(7692)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(200)]

    def text(size: int) -> str:
        out = " ".join(rng.choice(words) for _ in range(size // 10 + 1))
        return out[:size]

    sizes = [0, 1, 125, 126, 255, 256, 4096, 65535, 65536, 300_000]
    return [text(n) for n in sizes] + [rng.randbytes(n) for n in sizes]


MESSAGES = _messages()


@pytest.mark.parametrize("takeover", TAKEOVER)
def test_round_trips_each_takeover(start_server: ServerFactory, takeover: str) -> None:
    """Byte-exact echoes, whole and in fragments, compressible and random, with each side
    keeping or dropping its context as configured (and the client offering takeover)."""
    server = start_server(compression="deflate", compression_context_takeover=takeover)
    with connect(server) as ws:
        header = agreed(ws)
        assert header is not None
        assert ("server_no_context_takeover" in header) == (takeover in ("none", "client"))
        assert ("client_no_context_takeover" in header) == (takeover in ("none", "server"))
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
            if len(message) >= 4:
                quarter = len(message) // 4
                parts = [message[i : i + quarter] for i in range(0, len(message), quarter)]
                ws.send(parts)
                assert ws.recv(timeout=TIMEOUT) == message


def test_16_mib_round_trips(deflate_server: ServerProcess) -> None:
    """Messages of exactly max_message_size (16 MiB), compressible whole and random in 16
    fragments: the limit applies to the decompressed size, is inclusive, and one byte more
    closes 1009."""
    rng = random.Random(16)
    compressible = (b"fastws " * (16 * MiB // 7 + 1))[: 16 * MiB]
    incompressible = rng.randbytes(16 * MiB)
    with connect(deflate_server) as ws:
        ws.send(compressible.decode())
        assert ws.recv(timeout=30) == compressible.decode()
        ws.send([incompressible[i : i + MiB] for i in range(0, 16 * MiB, MiB)])
        assert ws.recv(timeout=30) == incompressible
        ws.send(compressible + b"!")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- the bomb ------------------------------------------------------------------------------


def make_bomb(compressed_size: int) -> bytes:
    """A raw DEFLATE stream of zeros, ~1024:1: `compressed_size` bytes inflate to ~1000x.

    After the first MiB, the window holds only zeros, and the segment encoding the next MiB of
    zeros is the same bytes every time, so the bomb is built without compressing gigabytes.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_SYNC_FLUSH)
    segment = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return first + segment * ((compressed_size - len(first)) // len(segment))


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_decompression_bomb_closes_1009_and_memory_stays_flat(
    start_server: ServerFactory,
) -> None:
    """A 10 MiB frame that inflates to 10 GiB: close 1009 as soon as 16 MiB is crossed; the
    server process's peak RSS (VmHWM) grows by about the limit, not by the bomb; the server
    keeps serving."""
    server = start_server(compression="deflate", max_message_size="16MiB")
    bomb = make_bomb(10 * MiB)
    assert len(bomb) >= 10 * MiB - MiB // 100
    with connect(server) as ws:  # warm up: import and allocate what a compressed echo needs
        ws.send("warm up " * 1000)
        assert ws.recv(timeout=TIMEOUT) == "warm up " * 1000
    pids = server.pids()
    before = max(status_kib(pid, "VmHWM") for pid in pids)
    frame = encode_frame(OP_BINARY, bomb, rsv=RSV1)
    with WireClient(server.port, timeout=30) as client:
        client.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        errors: list[BaseException] = []

        def send() -> None:
            try:
                client.send_raw(frame)
            except OSError as exc:  # the server closes before reading all of it
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        code, reason = client.recv_close()
        sender.join()
    assert code == 1009, reason
    after = max(status_kib(pid, "VmHWM") for pid in pids)
    growth_mib = (after - before) / 1024
    # Inflating stops at limit + 1 bytes; zlib's output blocks and their join may hold that
    # twice for an instant. 10 GiB would not fit this machine at all.
    assert growth_mib < 48, f"peak RSS grew by {growth_mib:.1f} MiB"
    assert server.wait_for_log("1009")
    with connect(server) as ws:
        ws.send(b"still here" * 100)
        assert ws.recv(timeout=TIMEOUT) == b"still here" * 100
