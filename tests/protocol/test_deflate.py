"""permessage-deflate (RFC 7692): negotiation, compression both ways, limits on inflation.

The peer in the round-trip tests is the `websockets` library's own permessage-deflate
implementation (an independent reference), driving fastws' `Connection` with real frames.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate as Reference
from websockets.frames import Frame
from websockets.frames import Opcode as WSOpcode

from fastws.protocol.connection import Close, Connection, Failure, State
from fastws.protocol.deflate import (
    Agreement,
    DeflateOptions,
    NegotiationError,
    PerMessageDeflate,
    accept_agreement,
    broadcast_frame,
    client_offer,
    negotiate,
)
from fastws.protocol.frames import CloseCode
from fastws.protocol.handshake import parse_extensions

TAKEOVER = [(False, False), (True, False), (False, True), (True, True)]


def offer(header: str, **options: object) -> Agreement | None:
    agreement, _ = negotiate(parse_extensions([header]), DeflateOptions(**options))  # type: ignore[arg-type]
    return agreement


def response(header: str, **options: object) -> Agreement | None:
    return accept_agreement(parse_extensions([header]), DeflateOptions(**options))  # type: ignore[arg-type]


# -- server side negotiation ---------------------------------------------------------------


def test_default_server_imposes_no_context_takeover_both_ways() -> None:
    """The default costs no zlib memory between messages: the server asks for none either way."""
    agreement = offer("permessage-deflate")
    assert agreement == Agreement(True, True, None, None)
    assert agreement.header() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )


def test_chromium_offer() -> None:
    """What browsers send (client_max_window_bits without a value) is accepted."""
    assert offer("permessage-deflate; client_max_window_bits") == Agreement(True, True)
    agreement = offer("permessage-deflate; client_max_window_bits", window_bits=10)
    assert agreement == Agreement(True, True, 10, 10)


def test_takeover_allowed_when_configured() -> None:
    """With takeover allowed and not refused by the client, no *_no_context_takeover is sent."""
    agreement = offer(
        "permessage-deflate", server_context_takeover=True, client_context_takeover=True
    )
    assert agreement == Agreement(False, False, None, None)
    assert agreement.header() == "permessage-deflate"


def test_client_refusing_server_takeover_is_honoured() -> None:
    """7.1.1.1: a server accepting server_no_context_takeover MUST include it in its response."""
    agreement = offer(
        "permessage-deflate; server_no_context_takeover", server_context_takeover=True
    )
    assert agreement is not None and agreement.server_no_context_takeover


def test_client_promise_of_no_takeover_is_echoed() -> None:
    """A client_no_context_takeover offer is answered with the parameter (explicit promise)."""
    agreement = offer(
        "permessage-deflate; client_no_context_takeover", client_context_takeover=True
    )
    assert agreement is not None and agreement.client_no_context_takeover


@pytest.mark.parametrize(
    ("header", "window_bits", "server_bits", "client_bits"),
    [
        ("permessage-deflate; server_max_window_bits=10", 15, 10, None),
        ("permessage-deflate; server_max_window_bits=12", 10, 10, None),
        ('permessage-deflate; server_max_window_bits="11"', 15, 11, None),
        ("permessage-deflate; server_max_window_bits=9", 15, 9, None),
        ("permessage-deflate; client_max_window_bits=8", 15, None, 8),
        ("permessage-deflate; client_max_window_bits=11", 12, 12, 11),
        ("permessage-deflate; client_max_window_bits=15", 15, None, None),
        ("permessage-deflate", 12, 12, None),
    ],
)
def test_window_bits(header: str, window_bits: int, server_bits: int, client_bits: int) -> None:
    """7.1.2: the response's window is the same or smaller than offered; client_max_window_bits
    only when offered."""
    agreement = offer(header, window_bits=window_bits)
    assert agreement is not None
    assert agreement.server_max_window_bits == server_bits
    assert agreement.client_max_window_bits == client_bits


@pytest.mark.parametrize(
    "params",
    [
        "foo",  # not defined for use in an offer
        "server_no_context_takeover; server_no_context_takeover",  # duplicate
        "client_max_window_bits; client_max_window_bits=10",  # duplicate
        "server_no_context_takeover=1",  # no value allowed
        "client_no_context_takeover=x",
        "server_max_window_bits",  # value required
        "server_max_window_bits=16",
        "server_max_window_bits=7",
        "server_max_window_bits=010",  # "without leading zeroes"
        "client_max_window_bits=0x9",
        "server_max_window_bits=8",  # valid, but zlib cannot deflate with 256 bytes
    ],
)
def test_bad_offer_is_declined(params: str) -> None:
    """5: the server MUST decline offers with unknown, duplicate or invalid parameters."""
    extensions = parse_extensions([f"permessage-deflate; {params}"])
    agreement, declined = negotiate(extensions, DeflateOptions())
    assert agreement is None
    assert len(declined) == 1


def test_first_acceptable_offer_wins() -> None:
    """5: several offers in one header (or several headers) are tried in order."""
    extensions = parse_extensions(
        [
            "x-other, permessage-deflate; server_max_window_bits=8, permessage-deflate; foo",
            "permessage-deflate; client_max_window_bits=9, permessage-deflate",
        ]
    )
    agreement, declined = negotiate(extensions, DeflateOptions())
    assert agreement == Agreement(True, True, None, 9)
    assert len(declined) == 2


def test_no_offer() -> None:
    """Other extensions only: nothing agreed, nothing declined."""
    assert negotiate(parse_extensions(["x-webkit-deflate-frame"]), DeflateOptions()) == (None, [])


def test_options_are_validated() -> None:
    """Window bits 8 cannot be produced by zlib; other zlib settings have their ranges."""
    for bad in ({"window_bits": 8}, {"memory_level": 10}, {"level": 10}, {"min_size": -1}):
        with pytest.raises(ValueError):
            DeflateOptions(**bad)  # type: ignore[arg-type]


# -- client side ---------------------------------------------------------------------------


def test_client_offer() -> None:
    """The client offer asks for what its options want and always allows window shrinking."""
    assert client_offer(DeflateOptions()) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
        " client_max_window_bits"
    )
    both = DeflateOptions(
        window_bits=10, server_context_takeover=True, client_context_takeover=True
    )
    assert client_offer(both) == (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    )


def test_client_offer_is_accepted_by_our_server() -> None:
    """Our own offer negotiates with our own server policy (all four takeover combinations)."""
    for server_takeover, client_takeover in TAKEOVER:
        options = DeflateOptions(
            server_context_takeover=server_takeover, client_context_takeover=client_takeover
        )
        agreement = offer(client_offer(options), window_bits=12)
        assert agreement is not None
        assert response(agreement.header(), **_options(options)) == agreement


def _options(options: DeflateOptions) -> dict[str, object]:
    return {
        "window_bits": options.window_bits,
        "server_context_takeover": options.server_context_takeover,
        "client_context_takeover": options.client_context_takeover,
    }


@pytest.mark.parametrize(
    ("header", "options"),
    [
        ("permessage-deflate; foo", {}),
        ("permessage-deflate; client_max_window_bits", {}),  # a response needs a value
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", {}),
        ("permessage-deflate; server_no_context_takeover; client_max_window_bits=16", {}),
        ("permessage-deflate; server_no_context_takeover; client_max_window_bits=8", {}),
        ("permessage-deflate", {}),  # we asked for server_no_context_takeover: MUST be there
        ("permessage-deflate; server_max_window_bits=12", {"window_bits": 10}),
        (
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
            {"window_bits": 10},
        ),
        (
            "permessage-deflate; server_no_context_takeover,"
            " permessage-deflate; server_no_context_takeover",
            {},
        ),
    ],
)
def test_client_fails_on_bad_response(header: str, options: dict[str, object]) -> None:
    """5: the client MUST fail when the response's parameters are invalid or unsupported."""
    with pytest.raises(NegotiationError):
        response(header, **options)


def test_client_without_extension_in_response() -> None:
    """No permessage-deflate in the response: the connection is uncompressed."""
    assert accept_agreement([], DeflateOptions()) is None


# -- messages ------------------------------------------------------------------------------


def parse_frames(data: bytes) -> list[tuple[bool, bool, int, bytes]]:
    """Split a server's (unmasked) byte stream into (fin, rsv1, opcode, payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        frames.append((bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, data[pos : pos + n]))
        pos += n
    return frames


def join(frame: bytes | tuple[bytes, bytes | bytearray | memoryview]) -> bytes:
    return frame if isinstance(frame, bytes) else b"".join(bytes(p) for p in frame)


class Pair:
    """A fastws server Connection and a websockets-library client, agreed on `agreement`."""

    def __init__(
        self, agreement: Agreement, options: DeflateOptions, max_message_size: int = 1 << 24
    ) -> None:
        self.server = Connection(
            max_message_size=max_message_size,
            deflate=PerMessageDeflate(agreement, options, client=False),
        )
        self.client = Reference(
            remote_no_context_takeover=agreement.server_no_context_takeover,
            local_no_context_takeover=agreement.client_no_context_takeover,
            remote_max_window_bits=agreement.server_max_window_bits or 15,
            local_max_window_bits=agreement.client_max_window_bits or 15,
        )

    def client_sends(self, message: bytes | str, fragments: int = 1, step: int = 0) -> object:
        """The reference client compresses `message` in `fragments` frames; server's event."""
        op = WSOpcode.TEXT if isinstance(message, str) else WSOpcode.BINARY
        data = message.encode() if isinstance(message, str) else message
        cut = [len(data) * i // fragments for i in range(fragments + 1)]
        wire = b""
        for i in range(fragments):
            frame = Frame(
                op if i == 0 else WSOpcode.CONT, data[cut[i] : cut[i + 1]], i == fragments - 1
            )
            wire += frame.serialize(mask=True, extensions=[self.client])
        if step:
            for i in range(0, len(wire), step):
                self.server.receive_data(bytearray(wire[i : i + step]))
        else:
            self.server.receive_data(wire)
        events, self.server.events = self.server.events, []
        assert len(events) == 1, events
        return events[0]

    def server_sends(self, message: bytes | str) -> bytes | str:
        """The server sends `message`; the reference client decodes it."""
        op = 1 if isinstance(message, str) else 2
        data = message.encode() if isinstance(message, str) else message
        frames = parse_frames(join(self.server.send_data(op, data)))
        assert len(frames) == 1
        fin, rsv1, opcode, payload = frames[0]
        frame = Frame(WSOpcode(opcode), payload, fin, rsv1)
        decoded = self.client.decode(frame)
        return decoded.data.decode() if opcode == 1 else decoded.data


messages = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=20), st.integers(1, 500)),
)


@pytest.mark.parametrize(("server_takeover", "client_takeover"), TAKEOVER)
@settings(max_examples=15, deadline=None)
@given(
    batch=st.lists(st.tuples(messages, st.integers(1, 4), st.integers(0, 50)), max_size=5),
    window_bits=st.integers(9, 15),
)
def test_round_trips(
    server_takeover: bool,
    client_takeover: bool,
    batch: list[tuple[bytes | str, int, int]],
    window_bits: int,
) -> None:
    """Byte-exact both ways against the reference, fragmented and split anywhere, for every
    takeover combination and window size: context is kept exactly when it was agreed."""
    options = DeflateOptions(
        window_bits=window_bits,
        min_size=0,
        server_context_takeover=server_takeover,
        client_context_takeover=client_takeover,
    )
    agreement = offer(client_offer(options), **_options(options))
    assert agreement is not None
    pair = Pair(agreement, options)
    for message, fragments, step in batch:
        assert pair.client_sends(message, fragments, step) == message
        assert pair.server_sends(message) == message
        assert pair.client_sends(message) == message  # a repeat: takeover finds it all


def test_server_frames_rsv1_first_only() -> None:
    """6: RSV1 on the first frame of a compressed message only, never on continuations."""
    agreement = Agreement(True, True)
    conn = Connection(deflate=PerMessageDeflate(agreement, DeflateOptions(), client=False))
    first = parse_frames(join(conn.send_data(2, b"a" * 1000, False)))
    cont = parse_frames(join(conn.send_data(0, b"b" * 1000, True)))
    assert first[0][:3] == (False, True, 2)
    assert cont[0][:3] == (True, False, 0)
    payload = first[0][3] + cont[0][3] + b"\x00\x00\xff\xff"
    assert zlib.decompressobj(-15).decompress(payload) == b"a" * 1000 + b"b" * 1000
    # Control frames are never compressed.
    assert conn.send_ping(b"x" * 100)[0] == 0x89


def test_compressed_tail_is_stripped() -> None:
    """7.2.1: the final 00 00 ff ff of the sync flush is not sent."""
    deflate = PerMessageDeflate(Agreement(True, True), DeflateOptions(), client=False)
    data = deflate.compress(b"hello" * 100)
    assert not data.endswith(b"\x00\x00\xff\xff")
    assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == b"hello" * 100


def test_small_and_incompressible_messages_go_uncompressed() -> None:
    """Below min_size, or when DEFLATE would not shrink it (no takeover), RSV1 stays clear."""
    conn = Connection(
        deflate=PerMessageDeflate(Agreement(True, True), DeflateOptions(min_size=100), client=False)
    )
    assert parse_frames(join(conn.send_data(1, b"x" * 99)))[0][1] is False
    assert parse_frames(join(conn.send_data(1, b"x" * 100)))[0][1] is True
    assert parse_frames(join(conn.send_data(2, os.urandom(5000))))[0][1] is False


def test_broadcast_frame_decodes_on_every_connection() -> None:
    """A message compressed once is valid on each connection without server takeover."""
    agreement = offer("permessage-deflate; client_max_window_bits", window_bits=12)
    assert agreement is not None
    options = DeflateOptions(window_bits=12)
    pairs = [Pair(agreement, options) for _ in range(3)]
    key = pairs[0].server.deflate.broadcast_key  # type: ignore[union-attr]
    assert key == (1, 12, 8)
    for i, pair in enumerate(pairs):  # interleave per-connection traffic with the broadcast
        assert pair.server_sends(f"private {i}" * 50) == f"private {i}" * 50
    frame = broadcast_frame(1, b"news " * 200, window_bits=12)
    for pair in pairs:
        fin, rsv1, opcode, payload = parse_frames(frame)[0]
        assert pair.client.decode(Frame(WSOpcode(opcode), payload, fin, rsv1)).data == (
            b"news " * 200
        )
    takeover = PerMessageDeflate(
        Agreement(False, True), DeflateOptions(server_context_takeover=True), client=False
    )
    assert takeover.broadcast_key is None


def test_client_connection_masks_compressed_frames() -> None:
    """A client Connection compresses and masks; our server Connection inflates it."""
    agreement = Agreement(False, False)
    options = DeflateOptions(server_context_takeover=True, client_context_takeover=True)
    client = Connection(client=True, deflate=PerMessageDeflate(agreement, options, client=True))
    server = Connection(deflate=PerMessageDeflate(agreement, options, client=False))
    for text in ("é" * 300, "é" * 300, "z" * 10):
        server.receive_data(join(client.send_data(1, text.encode())))
        assert server.events == [text]
        server.events.clear()
        client.receive_data(join(server.send_data(1, text.encode())))
        assert client.events == [text]
        client.events.clear()


# -- receiving: errors and limits ----------------------------------------------------------


def raw(first: int, payload: bytes, second: int | None = None) -> bytes:
    """One masked client frame with header byte `first` (FIN/RSV/opcode)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", n)
    masked_payload = (
        int.from_bytes(payload, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")
    ).to_bytes(n, "little")
    return head + key + masked_payload


def compress(data: bytes, wbits: int = 15) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    return (comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]


def server(max_message_size: int = 1 << 20, deflate: bool = True) -> Connection:
    pmd = PerMessageDeflate(Agreement(True, True), DeflateOptions(), client=False)
    return Connection(max_message_size=max_message_size, deflate=pmd if deflate else None)


def failed(conn: Connection) -> int:
    events, conn.events = conn.events, []
    assert isinstance(events[-1], Failure), events
    assert conn.state is State.CLOSED
    return events[-1].code


@pytest.mark.parametrize(
    ("frames", "negotiated"),
    [
        ([raw(0xC2, compress(b"abc"))], False),  # RSV1 without the extension
        ([raw(0x42, compress(b"abc")), raw(0xC0, compress(b"def"))], True),  # on a CONT
        ([raw(0xC9, b"ping")], True),  # on a control frame
        ([raw(0xA2, b"abc")], True),  # RSV2
        ([raw(0x92, b"abc")], True),  # RSV3
        ([raw(0xE2, compress(b"abc"))], True),  # RSV1 + RSV2
    ],
)
def test_rsv_bits_refused(frames: list[bytes], negotiated: bool) -> None:
    """6: RSV1 is only legal on the first frame of a data message, and only when negotiated;
    RFC 6455 5.2: any other reserved bit fails the connection (1002)."""
    conn = server(deflate=negotiated)
    conn.receive_data(b"".join(frames))
    assert failed(conn) == CloseCode.PROTOCOL_ERROR


def test_uncompressed_message_on_deflate_connection() -> None:
    """A message without RSV1 is not compressed, even when deflate was agreed."""
    conn = server()
    conn.receive_data(raw(0x82, b"plain"))
    assert conn.events == [b"plain"]


def test_corrupt_deflate_data_fails_1007() -> None:
    """Data that does not inflate fails the connection with 1007."""
    conn = server()
    conn.receive_data(raw(0xC2, b"\xff\xff\xff\xff garbage"))
    assert failed(conn) == CloseCode.INVALID_DATA


def test_invalid_utf8_inside_compressed_text_fails_1007() -> None:
    """Compressed text is validated after inflating (RFC 6455 8.1)."""
    conn = server()
    conn.receive_data(raw(0xC1, compress(b"ok \xff\xfe")))
    assert failed(conn) == CloseCode.INVALID_DATA


def test_bomb_in_one_frame_fails_1009_with_bounded_memory() -> None:
    """A 100 MiB -> 100 KiB bomb, limit 1 MiB: 1009, and inflating never holds more than
    about the limit (the bomb's ratio does not matter)."""
    bomb = compress(b"\0" * (100 << 20))
    frame = raw(0xC2, bomb)
    conn = server(max_message_size=1 << 20)
    tracemalloc.start()
    try:
        conn.receive_data(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failed(conn) == CloseCode.MESSAGE_TOO_BIG
    assert peak < 3 << 20


def test_bomb_in_tiny_reads_and_fragments_fails_1009() -> None:
    """The limit is checked on the decompressed size across fragments and partial reads."""
    bomb = compress(b"\0" * (8 << 20))
    pieces = [bomb[i : i + 1000] for i in range(0, len(bomb), 1000)]
    wire = raw(0x42, pieces[0]) + b"".join(raw(0x00, p) for p in pieces[1:-1])
    wire += raw(0x80, pieces[-1])
    conn = server(max_message_size=1 << 20)
    for i in range(0, len(wire), 333):
        conn.receive_data(wire[i : i + 333])
        if conn.state is State.CLOSED:
            break
    assert failed(conn) == CloseCode.MESSAGE_TOO_BIG


def test_message_exactly_at_limit_is_accepted() -> None:
    """The decompressed limit is inclusive; an incompressible message of exactly the limit
    fits although its compressed form is a little longer than the limit."""
    limit = 64 * 1024
    for data in (b"a" * limit, os.urandom(limit)):
        body = compress(data)
        conn = server(max_message_size=limit)
        conn.receive_data(raw(0xC2, body))
        assert conn.events == [data]
    conn = server(max_message_size=limit)
    conn.receive_data(raw(0xC2, compress(b"a" * (limit + 1))))
    assert failed(conn) == CloseCode.MESSAGE_TOO_BIG


def test_close_during_compressed_message() -> None:
    """A close in the middle of a compressed message drops the partial message cleanly."""
    conn = server()
    conn.receive_data(raw(0x42, compress(b"x" * 1000)) + raw(0x88, b"\x03\xe8"))
    assert len(conn.events) == 1 and type(conn.events[0]) is Close
    assert conn.deflate is not None and conn.deflate._decomp is None


# -- memory --------------------------------------------------------------------------------


def test_idle_connections_without_takeover_hold_no_zlib_state() -> None:
    """After traffic, 200 connections without context takeover hold no zlib memory: the cost
    of an idle compressed connection is that of an uncompressed one (plus ~100 bytes)."""
    agreement = Agreement(True, True)
    options = DeflateOptions(min_size=0)
    message = b'{"user": 1234, "text": "hello world"}' * 30
    wire = raw(0xC2, compress(message))
    conns = []
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            conn = Connection(deflate=PerMessageDeflate(agreement, options, client=False))
            conn.receive_data(wire)
            assert conn.events == [message]
            conn.events.clear()
            conn.send_data(2, message)
            conns.append(conn)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_connection = (after - before) / len(conns)
    assert per_connection < 4096, per_connection  # a Connection object and its dict


def test_takeover_contexts_are_allocated_lazily() -> None:
    """With takeover agreed, a direction costs zlib memory only once it is used."""
    agreement = Agreement(False, False)
    options = DeflateOptions(server_context_takeover=True, client_context_takeover=True)
    deflate = PerMessageDeflate(agreement, options, client=False)
    assert deflate._comp is None and deflate._decomp is None
    deflate.compress(b"x" * 1000)
    assert deflate._comp is not None and deflate._decomp is None
    deflate.decompress(compress(b"y" * 1000), 1 << 20, True)
    assert deflate._decomp is not None


def test_shared_compressor_is_safe_across_threads() -> None:
    """Connections in different threads (fastws.sync clients) never interleave their messages
    in one zlib stream: each thread has its own shared compressor."""
    import threading

    errors: list[str] = []

    def worker(seed: int) -> None:
        deflate = PerMessageDeflate(Agreement(True, True), DeflateOptions(), client=True)
        for i in range(30):
            data = (f"thread {seed} message {i} " * 4000).encode()
            out = deflate.compress(data) + b"\x00\x00\xff\xff"
            if zlib.decompressobj(-15).decompress(out) != data:
                errors.append(f"{seed}/{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
