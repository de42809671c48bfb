"""fastws.connect (asyncio) and fastws.sync against five servers written by others.

Node `ws`, WebSocket-Node, uWebSockets (socketify), `websockets` and aiohttp, each a real
server process (peers/): echo of text and binary messages, fragmented messages both ways,
pings both ways, close codes both ways, and permessage-deflate with each context-takeover
combination, checked on the wire by a recording proxy (what was agreed, RSV1, and whether a
side really kept its window between messages).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

import fastws
from fastws.protocol.deflate import DeflateOptions
from fastws.sync import InvalidHandshake
from tests.browser.proxy import (
    FrameHeader,
    ProxiedConnection,
    RecordingProxy,
    messages,
    response_field,
)
from tests.interop.peers.common import FRAGMENT, TAKEOVER, fragments

if TYPE_CHECKING:
    from tests.interop.conftest import PeerServer

KiB = 1024
MiB = 1024 * KiB
TEXTS = ["", "plain ASCII", "héllo wörld — ça va ?", "日本語 🎉 𝄞", "é日🎉" * 30_000]
SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]
#: Peers with no permessage-deflate at all.
NO_DEFLATE = {"websocket-node"}
#: Peers that may keep their compression window but were not seen to use it (their second
#: identical message compresses no better than the first).
SERVER_WINDOW_UNUSED = {"uwebsockets"}
#: Peers without an API to send a fragmented message.
NO_FRAGMENTS = {"aiohttp"}


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def proxied(peer: PeerServer, setting: str) -> RecordingProxy:
    return RecordingProxy(urlsplit(peer.urls[setting]).port or 80)


def finished(proxy: RecordingProxy) -> ProxiedConnection:
    assert len(proxy.connections) == 1, proxy.connections
    connection = proxy.connections[0]
    assert connection.done.wait(10), "the proxied connection did not finish"
    return connection


def test_echo(client: Any, peer: PeerServer) -> None:
    """Text (empty, non-ASCII, 330 KB of 2- to 4-byte characters) and binary messages of
    0 B to 16 MiB (each payload-length encoding, 7-bit to 64-bit) come back exactly and with
    their type; a normal close is answered with 1000."""
    ws = client.connect(peer.urls["off"], max_message_size=32 * MiB)
    for text in TEXTS:
        client.send(ws, text)
        assert client.recv(ws) == text
    for size in SIZES:
        data = payload(size)
        client.send(ws, data)
        echoed = client.recv(ws)
        assert isinstance(echoed, bytes) and len(echoed) == size
        assert echoed == data, f"{size} B echo differs"
    client.close(ws)
    assert ws.close_code == 1000  # the server answered the closing handshake with 1000


def test_server_sends_fragments(client: Any, peer: PeerServer) -> None:
    """A message the server sends in 8 fragments of 16 KiB (seen on the wire) arrives as one
    message, byte-exact (aiohttp's server cannot send fragments: it says so)."""
    with proxied(peer, "off") as proxy:
        ws = client.connect(proxy.url_for("/off"))
        client.send(ws, "!fragments 8")
        received = client.recv(ws)
        client.close(ws)
    if peer.name in NO_FRAGMENTS:
        assert received == "unsupported"
        return
    assert received == b"".join(fragments(8))
    [sent] = messages(finished(proxy).server_frames)
    assert [f.opcode for f in sent] == [2] + [0] * (len(sent) - 1), sent
    # `websockets` ends an iterable's message with an empty FIN frame.
    assert [f.length for f in sent if f.length] == [FRAGMENT] * 8, sent


@pytest.mark.parametrize("client", ["asyncio"], indirect=True)  # fastws.sync has no such API
def test_client_sends_fragments(client: Any, peer: PeerServer) -> None:
    """A text and a binary message sent with send_fragments (empty fragments among them) are
    reassembled by the server and come back whole."""
    ws = client.connect(peer.urls["off"])
    text = ["plain ", "café", "", " — 日本語 ", "🎉 done"]
    client.send_fragments(ws, text)
    assert client.recv(ws) == "".join(text)
    parts = [payload(100_000, n) for n in range(5)] + [b""]
    client.send_fragments(ws, parts)
    assert client.recv(ws) == b"".join(parts)
    client.close(ws)


def test_ping_pong(client: Any, peer: PeerServer) -> None:
    """The client's ping is answered by the server (its round trip comes back); the server's
    ping, with a payload, is answered by the client with that payload, unprompted."""
    ws = client.connect(peer.urls["off"])
    assert client.ping(ws, b"from fastws") >= 0.0
    assert client.ping(ws) >= 0.0
    client.send(ws, "!ping from the peer")
    assert client.recv(ws) == "pong:from the peer"
    client.send(ws, "still open")
    assert client.recv(ws) == "still open"
    client.close(ws)


#: The code each peer answers a Close 4000 with (RFC 6455 5.5.1: "typically echos").
CLOSE_ANSWER = {"websocket-node": 1000, "aiohttp": 1000}


def test_client_close_code(client: Any, peer: PeerServer) -> None:
    """close(4000, reason): the server sees code 4000 and the reason, and answers; close_code
    is then "the status code contained in the first Close control frame received" (RFC 6455
    7.1.5, "The WebSocket Connection Close Code"): 4000 from servers that echo it, 1000 from
    those that answer with 1000 (WebSocket-Node, aiohttp)."""
    answer = CLOSE_ANSWER.get(peer.name, 4000)
    ws = client.connect(peer.urls["off"])
    reason = f"bye from {client.name} ✓"
    client.close(ws, 4000, reason)
    closed = peer.wait_close(reason)
    assert closed["code"] == 4000, closed
    assert ws.close_code == answer


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "going away"), (4001, "done")])
def test_server_close_code(client: Any, peer: PeerServer, code: int, reason: str) -> None:
    """The server closes with `code` and `reason`: recv raises ConnectionClosed (the OK kind
    for 1000 and 1001), and close_code / close_reason are the server's."""
    ws = client.connect(peer.urls["off"])
    client.send(ws, f"!close {code} {reason}".rstrip())
    expected = fastws.ConnectionClosedOK if code in (1000, 1001) else fastws.ConnectionClosed
    with pytest.raises(expected):
        client.recv(ws)
    assert (ws.close_code, ws.close_reason) == (code, reason)


# --- compression ---------------------------------------------------------------------------


def low_entropy_text(size: int, seed: int, letters: bytes = b"abcdefgh") -> str:
    """`size` random characters out of `letters`: compressible, but only so far alone."""
    table = bytes(letters[i % len(letters)] for i in range(256))
    return payload(size, seed).translate(table).decode()


def compressible_once(seed: int) -> str:
    """2,000 characters over 16 letters: deflates to ~60 % alone, to a few bytes when the
    previous message (the same text) is still in the window."""
    return low_entropy_text(2000, seed, b"abcdefghijklmnop")


def check_takeover(frames: list[FrameHeader], kept: bool | None, side: str) -> None:
    """Two identical messages in a row, compressed: the second is tiny when the sender kept its
    window (context takeover), the same size when it did not (None: either)."""
    first, second = frames
    assert first.rsv1 and second.rsv1, (side, frames)
    if kept is None:
        return
    if kept:
        assert second.length < first.length // 4, f"{side} kept no window: {frames}"
    else:
        assert second.length == first.length, f"{side} kept its window: {frames}"


@pytest.mark.parametrize("setting", list(TAKEOVER))
def test_compression(client: Any, peer: PeerServer, setting: str) -> None:
    """permessage-deflate with the client and the server both set to `setting` (which side may
    keep its LZ77 window): the response agrees to it (a side may still be refused takeover:
    RFC 7692 7.1.1), messages round-trip, each compressed message has RSV1 on its first frame
    only, and each side kept its window exactly when the agreement allows it (for the client,
    also when its own offer ruled it out)."""
    server_takeover, client_takeover = TAKEOVER[setting]
    options = DeflateOptions(
        server_context_takeover=server_takeover, client_context_takeover=client_takeover
    )
    text = compressible_once(7)
    zeros, noise = bytes(MiB), payload(MiB)
    with proxied(peer, setting) as proxy:
        ws = client.connect(proxy.url_for(f"/{setting}"), compression=options)
        for message in (text, text, zeros, noise):
            client.send(ws, message)
            assert client.recv(ws) == message
        client.close(ws)
    wire = finished(proxy)
    agreed = response_field(wire.response_head, "sec-websocket-extensions")
    sent, echoed = messages(wire.client_frames), messages(wire.server_frames)
    if peer.name in NO_DEFLATE:
        assert agreed == "", agreed
        assert not any(f.rsv1 for f in wire.client_frames + wire.server_frames)
        return
    params = [p.strip() for p in agreed.split(";")]
    assert params[0] == "permessage-deflate", agreed
    # What the client's offer ruled out, an accepting server must confirm (RFC 7692 7.1.1.1).
    assert server_takeover or "server_no_context_takeover" in params, agreed
    if peer.name != "aiohttp":  # aiohttp has no takeover setting: it follows the offer
        assert ("server_no_context_takeover" not in params) == server_takeover, agreed
    # RSV1 only ever on a message's first frame (RFC 7692 6.1); every compressible message
    # compressed (random bytes may go out uncompressed: a sender chooses per message).
    for message in sent + echoed:
        assert not any(f.rsv1 for f in message[1:]), message[:3]
    for message in sent[:3] + echoed[:3]:
        assert message[0].rsv1, message[:3]
    client_kept = client_takeover and "client_no_context_takeover" not in params
    check_takeover([m[0] for m in sent[:2]], client_kept, "client")
    # A server allowed to keep its window need not (RFC 7692 7.1.1.1): uWebSockets' dedicated
    # compressor does not, here; the others do, so fastws' inflater must keep its window too.
    server_kept = "server_no_context_takeover" not in params
    if server_kept and peer.name in SERVER_WINDOW_UNUSED:
        server_kept = None
    check_takeover([m[0] for m in echoed[:2]], server_kept, "server")
    assert sum(f.length for f in sent[2]) < 64 * KiB, sent[2]  # 1 MiB of zeros deflated


@pytest.mark.parametrize("window_bits", [9, 12])
def test_compression_window_bits(client: Any, peer: PeerServer, window_bits: int) -> None:
    """A client asking for a small LZ77 window (less memory per connection) gets
    server_max_window_bits no larger than it asked for (RFC 7692 7.1.2.1), and messages much
    larger than the window, repeated (context takeover allowed both ways), round-trip."""
    options = DeflateOptions(
        window_bits=window_bits, server_context_takeover=True, client_context_takeover=True
    )
    with proxied(peer, "both") as proxy:
        ws = client.connect(proxy.url_for("/both"), compression=options)
        for size in (300, 5000, 70_000, MiB):
            text = low_entropy_text(size, window_bits)
            for _ in range(2):
                client.send(ws, text)
                assert client.recv(ws) == text
        client.close(ws)
    agreed = response_field(finished(proxy).response_head, "sec-websocket-extensions")
    if peer.name in NO_DEFLATE:
        assert agreed == "", agreed
        return
    params = dict(p.strip().partition("=")[::2] for p in agreed.split(";"))
    assert "permessage-deflate" in params, agreed
    assert 8 <= int(params["server_max_window_bits"]) <= window_bits, agreed


@pytest.mark.parametrize(
    ("setting", "options", "missing"),
    [
        ("both", DeflateOptions(client_context_takeover=True), "server_no_context_takeover"),
        (
            "none",
            DeflateOptions(window_bits=10, server_context_takeover=True),
            "server_max_window_bits",
        ),
    ],
    ids=["dedicated-compressor", "shared-compressor"],
)
@pytest.mark.parametrize("peer", ["uwebsockets"], indirect=True)
def test_unconfirmed_offer_is_refused(
    client: Any, peer: PeerServer, setting: str, options: DeflateOptions, missing: str
) -> None:
    """uWebSockets accepts some offers without confirming what they ask of the server: with a
    dedicated compressor, server_no_context_takeover; with the shared one, a smaller
    server_max_window_bits. RFC 7692 7.1.1.1 and 7.1.2.1 have a server accept those
    parameters by including them, and section 5 has the client fail the connection when the
    response is a configuration it does not support: fastws does (as the `websockets` client
    does), naming the parameter."""
    with pytest.raises(InvalidHandshake, match=missing):
        client.connect(peer.urls[setting], compression=options)
