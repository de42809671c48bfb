"""The frame-level state machine: what each byte sequence from a client turns into.

The byte streams here are built by `client_frame`, a reference encoder written from RFC 6455
5.2 independently of fastws' own encoder.
"""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.protocol.connection import DIRECT_MIN, Close, Connection, Failure, Pong, State
from fastws.protocol.frames import CloseCode


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def feed(conn: Connection, data: bytes, step: int | None = None) -> list[object]:
    if step is None:
        conn.receive_data(data)
    else:
        for i in range(0, len(data), step):
            conn.receive_data(memoryview(bytearray(data[i : i + step])))
    events, conn.events = conn.events, []
    return events


def failure(conn: Connection, data: bytes) -> tuple[int, str]:
    events = feed(conn, data)
    assert len(events) >= 1 and isinstance(events[-1], Failure), events
    assert conn.state is State.CLOSED
    out = b"".join(conn.data_to_send())
    assert out[0] == 0x88  # 7.1.7: fail by sending a Close frame...
    if out[1] & 0x80:  # a client's frame: unmask the code
        out = out[:2] + bytes(b ^ out[2 + i % 4] for i, b in enumerate(out[6:]))
    code = int.from_bytes(out[2:4], "big")
    assert code == events[-1].code  # ...whose code is the reason of the failure
    return code, events[-1].reason


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_text_and_binary_messages(size: int) -> None:
    conn = Connection()
    text = ("é" * size)[: size // 2]
    binary = os.urandom(size)
    assert feed(conn, client_frame(1, text.encode()) + client_frame(2, binary)) == [text, binary]


def test_fragmented_message_with_interleaved_ping() -> None:
    """5.4: control frames MAY be injected in the middle of a fragmented message."""
    conn = Connection()
    data = (
        client_frame(1, b"Hel", fin=False)
        + client_frame(9, b"ping!")
        + client_frame(0, b"lo", fin=False)
        + client_frame(10, b"unsolicited")
        + client_frame(0, b"", fin=True)
    )
    assert [repr(e) for e in feed(conn, data)] == ["Pong(b'unsolicited')", "'Hello'"]
    assert conn.data_to_send() == [b"\x8a\x05ping!"]  # 5.5.2: pong with identical data


@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.binary(max_size=300), min_size=1, max_size=4)),
        max_size=6,
    ),
    st.integers(1, 97),
)
@settings(max_examples=150, deadline=None)
def test_chunking_never_changes_the_messages(messages: list, step: int) -> None:
    """However the byte stream is split into reads, the same messages come out."""
    stream = b""
    expected: list[object] = []
    for is_text, fragments in messages:
        if is_text:
            fragments = [f.hex().encode() for f in fragments]
            expected.append(b"".join(fragments).decode())
        else:
            expected.append(b"".join(fragments))
        for i, fragment in enumerate(fragments):
            opcode = (1 if is_text else 2) if i == 0 else 0
            stream += client_frame(opcode, fragment, fin=i == len(fragments) - 1)
    assert feed(Connection(), stream, step) == expected
    assert feed(Connection(), stream) == expected


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_end_in_messages_or_a_protocol_error(data: bytes) -> None:
    """The parser never raises: garbage becomes a Failure event with a close code."""
    conn = Connection(max_message_size=1 << 20)
    conn.receive_data(data)
    conn.receive_data(data[::-1])
    for event in conn.events:
        assert isinstance(event, (str, bytes, Pong, Close))
        if isinstance(event, Failure):
            assert event.code in (1002, 1007, 1009)


def test_direct_payload_writes() -> None:
    """A large frame's payload can be written straight into its destination and is unmasked."""
    payload = os.urandom(3 * DIRECT_MIN + 5)
    frame = client_frame(2, payload)
    conn = Connection()
    conn.receive_data(frame[:100])
    written = 100 - 14
    while True:
        target = conn.payload_target()
        if target is None:
            break
        n = min(len(target), 10_000)
        target[:n] = frame[14 + written : 14 + written + n]
        written += n
        conn.payload_written(n)
    conn.receive_data(frame[14 + written :])
    assert conn.events == [payload]


# -- closing ----------------------------------------------------------------------------------


def test_close_is_echoed_and_ends_the_connection() -> None:
    conn = Connection()
    events = feed(conn, client_frame(8, b"\x0f\xa0bye") + client_frame(1, b"ignored"))
    assert [repr(e) for e in events] == ["Close(4000, 'bye')"]
    assert conn.data_to_send() == [b"\x88\x02\x0f\xa0"]
    assert conn.state is State.CLOSED


def test_empty_close_is_answered_with_an_empty_close() -> None:
    conn = Connection()
    assert [repr(e) for e in feed(conn, client_frame(8, b""))] == ["Close(1005, '')"]
    assert conn.data_to_send() == [b"\x88\x00"]


def test_close_inside_a_fragmented_message_is_a_normal_close() -> None:
    """Autobahn 7.1.5: a Close between fragments ends the connection cleanly."""
    conn = Connection()
    events = feed(conn, client_frame(1, b"frag", fin=False) + client_frame(8, b"\x03\xe8"))
    assert [repr(e) for e in events] == ["Close(1000, '')"]


def test_server_initiated_close() -> None:
    conn = Connection()
    assert conn.send_close(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert conn.state is State.CLOSING
    assert feed(conn, client_frame(1, b"late")) == ["late"]  # the peer had not seen it yet
    assert [repr(e) for e in feed(conn, client_frame(8, b"\x03\xe9"))] == ["Close(1001, '')"]
    assert conn.data_to_send() == []  # no second Close
    assert conn.state is State.CLOSED
    with pytest.raises(RuntimeError):
        conn.send_data(1, b"x")


def test_eof_without_close_is_1006() -> None:
    conn = Connection()
    conn.receive_eof()
    assert [repr(e) for e in conn.events] == ["Close(1006, '')"]


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(1, b"x", masked=False), 1002),  # 5.1: unmasked client frame
        (client_frame(1, b"x", rsv=1), 1002),  # 5.2: RSV without an extension
        (client_frame(1, b"x", rsv=2), 1002),
        (client_frame(1, b"x", rsv=4), 1002),
        *[(client_frame(op, b""), 1002) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)],
        (client_frame(9, b"x" * 126), 1002),  # 5.5: control frame > 125 bytes
        (client_frame(9, b"x", fin=False), 1002),  # 5.5: fragmented control frame
        (client_frame(0, b"x"), 1002),  # 5.4: continuation without a message
        (client_frame(1, b"a", fin=False) + client_frame(2, b"b"), 1002),  # 5.4
        (client_frame(1, b"\xff"), 1007),  # 8.1: invalid UTF-8
        (client_frame(1, b"\xce", fin=False) + client_frame(0, b"a"), 1007),
        (client_frame(1, b"\xce"), 1007),  # truncated at the end of the message
        (client_frame(8, b"\x03"), 1002),  # 5.5.1: 1-byte close payload
        (client_frame(8, b"\x03\xec"), 1002),  # 7.4: 1004 is reserved
        (client_frame(8, b"\x03\xe8\xff"), 1007),  # close reason must be UTF-8
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big") + b"abcd", 1002),  # 5.2: MSB must be 0
        (b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + b"abcd", 1009),  # declared too big
    ],
)
def test_protocol_violations_fail_with_their_close_code(data: bytes, code: int) -> None:
    assert failure(Connection(), data)[0] == code


def test_invalid_utf8_fails_fast_inside_a_fragment() -> None:
    """Autobahn 6.4: the close comes at the fragment that breaks UTF-8, before FIN."""
    conn = Connection()
    data = client_frame(1, "κόσμε".encode(), fin=False) + client_frame(
        0, b"\xf4\x90\x80\x80", fin=False
    )
    assert failure(conn, data)[0] == CloseCode.INVALID_DATA


def test_invalid_utf8_fails_fast_inside_a_frame() -> None:
    """Even before a frame's payload is complete, the bytes that arrived are validated."""
    frame = client_frame(1, b"valid text, then \xf4\x90\x80\x80 and more text" * 10)
    conn = Connection()
    conn.receive_data(frame[: 8 + 25])
    assert isinstance(conn.events[-1], Failure)
    assert conn.events[-1].code == CloseCode.INVALID_DATA


def test_limits_use_declared_lengths() -> None:
    """max_message_size and max_frame_size are checked before any payload is buffered."""
    conn = Connection(max_message_size=1000)
    assert failure(conn, client_frame(2, b"", length=1001)[:8])[0] == 1009
    conn = Connection(max_message_size=1000)
    assert feed(conn, client_frame(2, b"x" * 1000)) == [b"x" * 1000]
    conn = Connection(max_message_size=1000)
    data = client_frame(2, b"x" * 600, fin=False) + client_frame(0, b"y" * 401)
    assert failure(conn, data)[0] == 1009
    conn = Connection(max_message_size=10_000, max_frame_size=100)
    assert failure(conn, client_frame(2, b"x" * 101))[0] == 1009


def test_fragment_count_limit() -> None:
    conn = Connection(max_fragments=3)
    data = client_frame(2, b"a", fin=False) + client_frame(0, b"b", fin=False)
    assert feed(conn, data + client_frame(0, b"c")) == [b"abc"]
    data += client_frame(0, b"c", fin=False) + client_frame(0, b"d")
    conn = Connection(max_fragments=3)
    assert failure(conn, data) == (1009, "too many fragments")


@pytest.mark.parametrize("quota", [1, 3, 1024])
def test_sliced_parsing_delivers_the_same_events(quota: int) -> None:
    """With `slice_frames`, one read of many frames outside the fast path (fragments, pings)
    is parsed a slice of `quota` frames at a time: `blocked` and `sliced` are set in between
    (so the I/O layer can serve other connections of its loop), and resuming slice by slice
    gives exactly the events one unsliced parse gives, in order."""
    stream = client_frame(9, b"p0")
    for i in range(40):
        stream += client_frame(2 if i == 0 else 0, bytes([i]) * 3, fin=i == 39)
    stream += client_frame(1, b"whole") + client_frame(9, b"p1")
    stream += b"".join(client_frame(1 if i == 0 else 0, b"t", fin=i == 9) for i in range(10))
    expected = feed(Connection(), stream)
    frames = 1 + 40 + 1 + 10  # the whole text message takes the fast path: not counted

    conn = Connection()
    conn.slice_frames = quota
    conn.receive_data(stream)
    slices = 1
    while conn.blocked:
        assert conn.sliced
        assert conn.resume()
        slices += 1
    assert not conn.sliced
    assert conn.events == expected
    assert slices == -(-frames // quota)


def test_huge_declared_frame_costs_no_memory() -> None:
    """A 2 GiB frame declaration reserves address space only (an mmap), not memory."""
    conn = Connection(max_message_size=1 << 31)
    conn.receive_data(client_frame(2, b"", length=1 << 31)[:14] + b"abc")
    target = conn.payload_target()
    assert target is not None and len(target) == (1 << 31) - 3


# -- client side ------------------------------------------------------------------------------


def test_client_masks_and_rejects_masked_frames() -> None:
    client = Connection(client=True)
    frame = client.send_data(1, b"hi")
    assert isinstance(frame, bytes) and frame[1] & 0x80  # 5.1: clients MUST mask
    assert feed(client, b"\x81\x02hi") == ["hi"]
    assert failure(client, client_frame(1, b"x"))[0] == 1002


def test_connection_state_has_no_instance_dict() -> None:
    """Every open connection holds one Connection: with __slots__ it costs ~300 bytes, where
    an instance dict past CPython's key-sharing limit (~30 attributes) cost 1.6 KB more per
    idle connection. A new attribute must be added to __slots__ (assigning one that is not
    there raises)."""
    for conn in (Connection(), Connection(client=True)):
        assert not hasattr(conn, "__dict__")
        with pytest.raises(AttributeError):
            conn.not_a_slot = 1  # type: ignore[attr-defined]


# -- receive_one: the one-message-per-read shortcut ------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    opcode=st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
    payload=st.binary(max_size=140),
    fin=st.booleans(),
    masked=st.booleans(),
    rsv1=st.booleans(),
    extra=st.binary(max_size=3),
    limit=st.sampled_from([1 << 20, 64]),
)
def test_receive_one_agrees_with_receive_data(
    opcode: int, payload: bytes, fin: bool, masked: bool, rsv1: bool, extra: bytes, limit: int
) -> None:
    """For any read, receive_one either declines (None, nothing consumed: receive_data then
    gives the usual answer) or returns exactly the message receive_data would have queued,
    with no other event and no frame to send. Never a message receive_data would refuse."""
    data = client_frame(opcode, payload, fin=fin, masked=masked, rsv=4 if rsv1 else 0) + extra
    shortcut = Connection(max_message_size=limit)
    general = Connection(max_message_size=limit)
    general.receive_data(data)
    result = shortcut.receive_one(memoryview(data), len(data))
    if result is None:
        shortcut.receive_data(data)
        assert repr(shortcut.events) == repr(general.events)
        assert shortcut.state is general.state
        return
    assert general.events == [result]
    assert general.state is State.OPEN and not general.data_to_send()
    assert shortcut.state is State.OPEN and not shortcut.events


def test_receive_one_declines_while_something_is_in_progress() -> None:
    """A half-received frame, an unfinished fragmented message or a partial header keep the
    shortcut out: those bytes belong to the general parser."""
    conn = Connection()
    conn.receive_data(client_frame(0x1, b"abc", fin=False))  # a fragmented message begins
    whole = client_frame(0x1, b"xyz")
    assert conn.receive_one(memoryview(whole), len(whole)) is None
    conn = Connection()
    conn.receive_data(client_frame(0x2, b"x" * 100)[:3])  # a partial header is kept
    assert conn.receive_one(memoryview(whole), len(whole)) is None


@settings(max_examples=300, deadline=None)
@given(
    opcode=st.sampled_from([0xA, 0x9, 0x2, 0x0]),
    payload=st.binary(max_size=130),
    masked=st.booleans(),
    rsv1=st.booleans(),
    extra=st.binary(max_size=3),
)
def test_lone_pong_is_exactly_what_the_parser_takes_as_one_pong(
    opcode: int, payload: bytes, masked: bool, rsv1: bool, extra: bytes
) -> None:
    """lone_pong() says yes only to a read the general parser turns into one Pong and nothing
    else (no failure, nothing to send): an I/O layer that skips the parser for it misses
    nothing; a bad or unfinished frame, or more bytes, still go to the parser."""
    data = client_frame(opcode, payload, masked=masked, rsv=4 if rsv1 else 0) + extra
    general = Connection()
    general.receive_data(data)
    if Connection().lone_pong(memoryview(data), len(data)):
        assert repr(general.events) == repr([Pong(payload)])
        assert general.state is State.OPEN and not general.data_to_send()


def test_lone_pong_declines_while_something_is_in_progress() -> None:
    """Half a frame before it, a client connection, or a closing one: the parser decides."""
    pong = client_frame(0xA, b"ka")
    conn = Connection()
    assert conn.lone_pong(memoryview(pong), len(pong))
    conn.receive_data(client_frame(0x2, b"x" * 100)[:3])
    assert not conn.lone_pong(memoryview(pong), len(pong))
    assert not Connection(client=True).lone_pong(memoryview(pong), len(pong))
    conn = Connection()
    conn.send_close(1000)
    assert not conn.lone_pong(memoryview(pong), len(pong))


def test_deferred_failure_lets_answers_go_before_the_close_frame() -> None:
    """With defer_failure, a violation after a complete message reports the message, then
    Failure; no Close frame is queued yet and data may still be framed; close_failed() then
    queues the Close frame with the failure's code, and nothing can be sent after it."""
    conn = Connection()
    conn.defer_failure = True
    conn.receive_data(
        client_frame(0x1, b"hello") + client_frame(0x3, b"") + client_frame(0x1, b"x")
    )
    assert conn.events[0] == "hello"
    assert isinstance(conn.events[1], Failure) and conn.events[1].code == CloseCode.PROTOCOL_ERROR
    assert len(conn.events) == 2  # nothing after the violation
    assert conn.state is State.CLOSED and conn.failing is not None
    assert conn.data_to_send() == []
    answer = conn.send_data(0x1, b"hello")
    assert answer == b"\x81\x05hello"
    conn.close_failed()
    [close] = conn.data_to_send()
    assert close[:4] == b"\x88" + bytes([len(close) - 2]) + CloseCode.PROTOCOL_ERROR.to_bytes(
        2, "big"
    )
    with pytest.raises(RuntimeError):
        conn.send_data(0x1, b"late")


def test_without_defer_failure_the_close_frame_is_queued_at_once() -> None:
    """The default (sans-I/O users, tests): _Fail the WebSocket Connection_ queues our Close
    frame immediately."""
    conn = Connection()
    conn.receive_data(client_frame(0x1, b"hello") + client_frame(0x3, b""))
    assert conn.failing is None
    [close] = conn.data_to_send()
    assert close[0] == 0x88


def test_an_exception_of_ours_fails_the_connection_with_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the parser (any exception that is not the peer's fault) fails the connection
    with 1011 and keeps the exception for the log line; it never escapes receive_data."""

    def broken(self: Connection, opcode: int, payload: bytes) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Connection, "_control", broken)
    conn = Connection()
    conn.receive_data(client_frame(0x9, b"ping"))
    [failure] = conn.events
    assert isinstance(failure, Failure) and failure.code == CloseCode.INTERNAL_ERROR
    assert isinstance(conn.error, KeyError)
    [close] = conn.data_to_send()
    assert close[2:4] == CloseCode.INTERNAL_ERROR.to_bytes(2, "big")
