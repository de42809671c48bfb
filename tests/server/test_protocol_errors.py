"""Frame-level protocol violations and edge cases over raw sockets (RFC 6455 5, 7, 8).

Each test completes a valid handshake with tests/wire.py, sends frames by hand, and checks the
server's close code and that it then closes the TCP connection without waiting for us
(RFC 6455 7.1.7 _Fail the WebSocket Connection_). The frame reader also checks every frame the
server sends (unmasked, RSV 0, minimal length encoding, short unfragmented control frames).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from websockets.sync.client import connect

from tests.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    TIMEOUT,
    WireClient,
    close_payload,
    encode_frame,
)

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

MiB = 1 << 20
#: The server's default --max-message-size (API contract).
DEFAULT_MAX_MESSAGE_SIZE = 16 * MiB
#: The limit of `small_server`.
SMALL_LIMIT = 1024


@contextlib.contextmanager
def opened(server: ServerProcess) -> Iterator[WireClient]:
    """A raw connection past the opening handshake."""
    with WireClient(server.port) as client:
        client.handshake()
        yield client


@pytest.fixture(scope="module")
def small_server(start_module_server: ServerFactory) -> ServerProcess:
    """Echo server with --max-message-size 1024."""
    return start_module_server(max_message_size=SMALL_LIMIT)


# ---------------------------------------------------------------------------------------------
# Framing (RFC 6455 5.1, 5.2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("opcode", "payload"), [(OP_TEXT, b"hello"), (OP_PING, b"")])
def test_unmasked_client_frame_fails_1002(
    echo_server: ServerProcess, opcode: int, payload: bytes
) -> None:
    """RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that is not
    masked ... a server MAY send a Close frame with a status code of 1002"."""
    with opened(echo_server) as ws:
        ws.send_frame(opcode, payload, mask=False)
        ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_PING])
@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
def test_reserved_bits_fail_1002(echo_server: ServerProcess, rsv: int, opcode: int) -> None:
    """RFC 6455 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated" (none is), else the
    receiver "MUST _Fail the WebSocket Connection_"."""
    with opened(echo_server) as ws:
        ws.send_frame(opcode, b"hello", rsv=rsv)
        ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_1002(echo_server: ServerProcess, opcode: int) -> None:
    """RFC 6455 5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
    WebSocket Connection_"."""
    with opened(echo_server) as ws:
        ws.send_frame(opcode, b"x")
        ws.expect_close(1002)


def test_length_with_top_bit_set_fails_1002(echo_server: ServerProcess) -> None:
    """RFC 6455 5.2: in a 64-bit length "the most significant bit MUST be 0": that is a
    protocol error (1002), whatever the size limit says."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_BINARY, b"", length_override=(1 << 63) + 5)
        ws.expect_close(1002)


# ---------------------------------------------------------------------------------------------
# Control frames (RFC 6455 5.5)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [
        (OP_PING, b"p" * 126),
        (OP_PONG, b"p" * 126),
        (OP_CLOSE, close_payload(1000, "r" * 124)),
    ],
    ids=["ping", "pong", "close"],
)
def test_control_frame_over_125_bytes_fails_1002(
    echo_server: ServerProcess, opcode: int, payload: bytes
) -> None:
    """RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less"."""
    with opened(echo_server) as ws:
        ws.send_frame(opcode, payload)
        ws.expect_close(1002)


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [(OP_PING, b"ping"), (OP_PONG, b"pong"), (OP_CLOSE, close_payload(1000))],
    ids=["ping", "pong", "close"],
)
def test_fragmented_control_frame_fails_1002(
    echo_server: ServerProcess, opcode: int, payload: bytes
) -> None:
    """RFC 6455 5.5: control frames "MUST NOT be fragmented" (FIN clear)."""
    with opened(echo_server) as ws:
        ws.send_frame(opcode, payload, fin=False)
        ws.expect_close(1002)


@pytest.mark.parametrize("size", [0, 1, 125])
def test_ping_answered_with_same_payload(echo_server: ServerProcess, size: int) -> None:
    """RFC 6455 5.5.3: the pong answering a ping "MUST have identical Application data"; a
    125-byte ping is legal."""
    payload = os.urandom(size)
    with opened(echo_server) as ws:
        ws.send_frame(OP_PING, payload)
        frame = ws.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_PONG, payload)
        ws.echo()


def test_unsolicited_pong_ignored(echo_server: ServerProcess) -> None:
    """RFC 6455 5.5.3: "A Pong frame MAY be sent unsolicited ... A response to an unsolicited
    Pong frame is not expected": nothing comes back and the connection goes on."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_PONG, b"unsolicited")
        ws.send_frame(OP_PONG, b"")
        ws.echo(OP_TEXT, b"still here")


def test_ping_between_fragments(echo_server: ServerProcess) -> None:
    """RFC 6455 5.4: "Control frames MAY be injected in the middle of a fragmented message": the
    pong comes back at once and the message is then delivered whole."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, b"frag", fin=False)
        ws.send_frame(OP_PING, b"in between")
        frame = ws.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_PONG, b"in between")
        ws.send_frame(OP_CONT, b"men", fin=False)
        ws.send_frame(OP_PONG, b"unsolicited, also in between")
        ws.send_frame(OP_CONT, b"ted")
        assert ws.recv_message() == (OP_TEXT, b"fragmented")


# ---------------------------------------------------------------------------------------------
# Fragmentation (RFC 6455 5.4)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_message_fails_1002(echo_server: ServerProcess, fin: bool) -> None:
    """RFC 6455 5.4: a continuation frame only continues a fragmented message in progress."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_CONT, b"orphan", fin=fin)
        ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_message_inside_fragmented_one_fails_1002(
    echo_server: ServerProcess, opcode: int
) -> None:
    """RFC 6455 5.4: "The fragments of one message MUST NOT be interleaved between the fragments
    of another message": a text/binary frame while a message is unfinished fails."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_BINARY, b"first", fin=False)
        ws.send_frame(opcode, b"second")
        ws.expect_close(1002)


def test_empty_fragments(echo_server: ServerProcess) -> None:
    """RFC 6455 5.4: fragments (and messages) may be empty."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, b"", fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_CONT, b"")
        assert ws.recv_message() == (OP_TEXT, b"")
        ws.send_frame(OP_BINARY, b"", fin=False)
        ws.send_frame(OP_CONT, b"x")
        assert ws.recv_message() == (OP_BINARY, b"x")


def test_frame_delivered_byte_by_byte(echo_server: ServerProcess) -> None:
    """A frame (64-bit length, masked) arriving one byte per TCP segment is reassembled."""
    payload = os.urandom(300)
    data = encode_frame(OP_BINARY, payload)
    with opened(echo_server) as ws:
        for i in range(len(data)):
            ws.send_raw(data[i : i + 1])
        assert ws.recv_message() == (OP_BINARY, payload)


def test_several_frames_in_one_segment(echo_server: ServerProcess) -> None:
    """Frames back to back in one write are all processed, in order."""
    with opened(echo_server) as ws:
        ws.send_raw(
            encode_frame(OP_TEXT, b"one")
            + encode_frame(OP_PING, b"p")
            + encode_frame(OP_BINARY, b"two", fin=False)
            + encode_frame(OP_CONT, b"three")
            + encode_frame(OP_TEXT, b"four")
        )
        assert ws.recv_message() == (OP_TEXT, b"one")
        assert ws.recv_message() == (OP_BINARY, b"twothree")
        assert ws.recv_message() == (OP_TEXT, b"four")
        assert [(f.opcode, f.payload) for f in ws.control_frames] == [(OP_PONG, b"p")]


@pytest.mark.parametrize("size", [125, 126, 65535, 65536])
def test_server_length_encoding_is_minimal(echo_server: ServerProcess, size: int) -> None:
    """RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length" — checked
    on the server's echo at each encoding boundary (the frame reader asserts it)."""
    with opened(echo_server) as ws:
        ws.echo(OP_BINARY, os.urandom(size))


# ---------------------------------------------------------------------------------------------
# UTF-8 (RFC 6455 5.6, 8.1)
# ---------------------------------------------------------------------------------------------

INVALID_UTF8 = {
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "bad-continuation": b"hello\xc3(",
    "overlong-2": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "truncated-at-end": "κόσμε".encode()[:-1],
}


@pytest.mark.parametrize("case", sorted(INVALID_UTF8))
def test_invalid_utf8_text_fails_1007(echo_server: ServerProcess, case: str) -> None:
    """RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the
    byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
    Connection_" (status 1007, 7.4.1)."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, INVALID_UTF8[case])
        ws.expect_close(1007)


def test_invalid_utf8_detected_at_the_offending_fragment(echo_server: ServerProcess) -> None:
    """RFC 6455 8.1 (Autobahn 6.4.x "fail fast"): a fragment that makes the text invalid
    fails the connection at once, without waiting for the end of the message."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, "κόσμε".encode(), fin=False)
        ws.send_frame(OP_CONT, b"\xf4\x90\x80\x80hello", fin=False)
        ws.expect_close(1007)  # the final fragment is never sent


def test_incomplete_utf8_at_end_of_fragmented_message_fails_1007(
    echo_server: ServerProcess,
) -> None:
    """RFC 6455 8.1: a message whose last fragment ends inside a UTF-8 sequence is invalid."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, b"ab\xce", fin=False)
        ws.send_frame(OP_CONT, b"")
        ws.expect_close(1007)


def test_code_points_split_across_fragments_are_valid(echo_server: ServerProcess) -> None:
    """RFC 6455 5.6/8.1: validity is a property of the whole message: a code point split
    between fragments (even byte by byte) is fine."""
    text = "κόσμε 𝄞 €".encode()
    with opened(echo_server) as ws:
        for i, byte in enumerate(text):
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, bytes((byte,)), fin=i == len(text) - 1)
        assert ws.recv_message() == (OP_TEXT, text)


# ---------------------------------------------------------------------------------------------
# Closing (RFC 6455 5.5.1, 7.1, 7.4)
# ---------------------------------------------------------------------------------------------


def test_close_with_one_byte_payload_fails_1002(echo_server: ServerProcess) -> None:
    """RFC 6455 5.5.1: a close body, if any, "MUST be a 2-byte unsigned integer" first."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_CLOSE, b"\x03")
        ws.expect_close(1002)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_with_invalid_code_fails_1002(echo_server: ServerProcess, code: int) -> None:
    """RFC 6455 7.4: codes below 1000, 1004 (reserved), 1005/1006/1015 ("MUST NOT be set ... in
    a Close control frame"), unassigned 1016-2999, and 5000+ are protocol errors."""
    with opened(echo_server) as ws:
        ws.send_close(code, "bad code")
        ws.expect_close(1002)


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
# Registered with IANA after RFC 6455 (service restart, try again later, bad gateway).
IANA_CLOSE_CODES = [1012, 1013, 1014]


@pytest.mark.parametrize("code", VALID_CLOSE_CODES + IANA_CLOSE_CODES)
def test_close_with_valid_code_is_echoed(echo_server: ServerProcess, code: int) -> None:
    """RFC 6455 5.5.1: the endpoint receiving a close "MUST send a Close frame in response ...
    typically echoing the status code it received", then the server closes TCP (7.1.1)."""
    with opened(echo_server) as ws:
        ws.send_close(code, "closing: ok ✓")
        ws.expect_close(code)


def test_close_with_empty_payload_answered(echo_server: ServerProcess) -> None:
    """RFC 6455 5.5.1/7.1.5: a close without a code is answered with an empty close or 1000."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_CLOSE, b"")
        ws.expect_close(None, 1000)


def test_close_with_invalid_utf8_reason_fails_1007(echo_server: ServerProcess) -> None:
    """RFC 6455 5.5.1: the close reason is UTF-8; 8.1: invalid UTF-8 fails with 1007."""
    with opened(echo_server) as ws:
        ws.send_close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
        ws.expect_close(1007)


def test_close_in_middle_of_fragmented_message_is_echoed(echo_server: ServerProcess) -> None:
    """RFC 6455 5.4/5.5.1 (Autobahn 5.x/7.x): a close between the fragments of a message is a
    legal control frame: it is echoed normally (1000), not treated as an error."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_TEXT, b"unfin", fin=False)
        ws.send_close(1000)
        ws.send_frame(OP_CONT, b"ished")  # after the close: ignored
        ws.expect_close(1000)


def test_frames_after_close_are_ignored(echo_server: ServerProcess) -> None:
    """RFC 6455 5.5.1: after a close, data is not processed (Autobahn 7.1.3/7.1.4): the only
    answer is the close echo, nothing is echoed for the text sent after the close."""
    with opened(echo_server) as ws:
        ws.send_close(1000)
        ws.send_frame(OP_TEXT, b"too late")
        ws.expect_close(1000)


# ---------------------------------------------------------------------------------------------
# Size limits (--max-message-size; 1009 "message too big", RFC 6455 7.4.1)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [SMALL_LIMIT + 1, 65536, (1 << 63) - 1])
def test_declared_length_over_limit_fails_1009(small_server: ServerProcess, declared: int) -> None:
    """A frame header declaring more than --max-message-size is refused with 1009 as soon as the
    header arrives (the payload is never sent)."""
    with opened(small_server) as ws:
        ws.send_frame(OP_BINARY, b"", length_override=declared)
        ws.expect_close(1009)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_message_of_exactly_the_limit_accepted(small_server: ServerProcess, opcode: int) -> None:
    """--max-message-size is inclusive: a message of exactly that size, in one frame or in
    fragments, is echoed."""
    payload = b"x" * SMALL_LIMIT
    with opened(small_server) as ws:
        ws.echo(opcode, payload)
        ws.send_frame(opcode, payload[:500], fin=False)
        ws.send_frame(OP_CONT, payload[500:])
        assert ws.recv_message() == (opcode, payload)


def test_fragments_adding_up_over_limit_fail_1009(small_server: ServerProcess) -> None:
    """The limit applies to the message, not the frame: fragments of 400 bytes fail with 1009
    at the one that crosses 1024, before the message is finished."""
    with opened(small_server) as ws:
        ws.send_frame(OP_BINARY, b"a" * 400, fin=False)
        ws.send_frame(OP_CONT, b"b" * 400, fin=False)
        ws.send_frame(OP_CONT, b"c" * 400, fin=False)
        ws.expect_close(1009)  # the final fragment is never sent


def test_default_limit_is_16mib(echo_server: ServerProcess) -> None:
    """API contract: the default --max-message-size is 16 MiB: one byte more is refused."""
    with opened(echo_server) as ws:
        ws.send_frame(OP_BINARY, b"", length_override=DEFAULT_MAX_MESSAGE_SIZE + 1)
        ws.expect_close(1009)


def test_huge_declared_length_fails_1009_without_memory_growth(echo_server: ServerProcess) -> None:
    """A frame declaring 2^63-1 bytes (default limit) gets 1009 immediately, and the server's
    resident memory does not jump (nothing is allocated for the declared size)."""
    before = echo_server.rss_bytes()
    with opened(echo_server) as ws:
        ws.send_frame(OP_BINARY, b"", length_override=(1 << 63) - 1)
        ws.expect_close(1009)
    assert echo_server.rss_bytes() - before < 50 * MiB


def test_declared_but_unsent_payloads_cost_no_memory(echo_server: ServerProcess) -> None:
    """Ten connections each declaring a frame just under the 16 MiB limit and sending 1 byte of
    it do not make the server's resident memory grow by their declared 160 MiB (a peer's claim
    costs nothing until the bytes arrive)."""
    before = echo_server.rss_bytes()
    clients = []
    try:
        for _ in range(10):
            ws = WireClient(echo_server.port)
            clients.append(ws)
            ws.handshake()
            ws.send_frame(OP_BINARY, b"", length_override=DEFAULT_MAX_MESSAGE_SIZE - 1)
            ws.send_raw(b"x")
        # A full round trip on another connection: the server has read what was sent above.
        with opened(echo_server) as probe:
            probe.echo()
        growth = echo_server.rss_bytes() - before
    finally:
        for ws in clients:
            ws.close()
    assert growth < 50 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# Isolation
# ---------------------------------------------------------------------------------------------

BAD_CLIENTS = [
    (lambda ws: ws.send_frame(OP_TEXT, b"x", mask=False), 1002),
    (lambda ws: ws.send_frame(OP_TEXT, b"\xff"), 1007),
    (lambda ws: ws.send_frame(0xB, b""), 1002),
    (lambda ws: ws.send_frame(OP_BINARY, b"", length_override=(1 << 63) - 1), 1009),
    (lambda ws: ws.send_frame(OP_CONT, b""), 1002),
]


def test_bad_clients_do_not_affect_good_ones(echo_server: ServerProcess) -> None:
    """A protocol error fails that connection only: a well-behaved client (websockets library)
    connected throughout keeps echoing between each bad client's failure, and a bad client
    left half-way through a message does not block anyone."""
    with (
        connect(
            echo_server.url, compression=None, proxy=None, open_timeout=TIMEOUT, ping_interval=None
        ) as good,
        opened(echo_server) as stalled,
    ):
        stalled.send_frame(OP_BINARY, b"half a message", fin=False)
        for i, (misbehave, code) in enumerate(BAD_CLIENTS):
            with opened(echo_server) as bad:
                misbehave(bad)
                bad.expect_close(code)
            good.send(f"good {i}")
            assert good.recv(timeout=TIMEOUT) == f"good {i}"
        stalled.send_frame(OP_CONT, b", finished")
        assert stalled.recv_message() == (OP_BINARY, b"half a message, finished")


def test_close_1009_reaches_a_client_that_is_still_sending(start_server: ServerFactory) -> None:
    """A client still sending the rest of a too-big message reads the Close 1009, not a TCP
    reset: after failing the connection the server sends FIN and discards what keeps coming
    until the client closes (a plain close() with unread bytes makes the kernel send RST,
    and browsers then drop the Close frame and report 1006)."""
    server = start_server(max_message_size="1MiB")
    data = encode_frame(OP_BINARY, bytes(8 << 20))
    for _ in range(3):
        with WireClient(server.port) as client:
            client.handshake()
            errors: list[OSError] = []

            def send_all(client: WireClient = client, errors: list[OSError] = errors) -> None:
                try:
                    client.sock.sendall(data)
                except OSError as exc:
                    errors.append(exc)

            sender = threading.Thread(target=send_all)
            sender.start()
            code, _ = client.recv_close()
            sender.join(10)
            assert code == 1009
            assert not errors, f"the server reset the connection: {errors}"


# ---------------------------------------------------------------------------------------------
# Failing after complete messages (RFC 6455 7.1.7; Autobahn 3.2, 4.1.3, 5.15 ...)
# ---------------------------------------------------------------------------------------------

#: What Autobahn's strict cases send in one burst: valid messages, then a violation, then
#: more that must never be delivered.
_STRICT_BURSTS = {
    "rsv-after-text": [
        encode_frame(OP_TEXT, b"hello"),
        encode_frame(OP_TEXT, b"hello", rsv=RSV2),
        encode_frame(OP_PING, b""),
    ],
    "reserved-opcode-after-text": [
        encode_frame(OP_TEXT, b"hello"),
        encode_frame(0x3, b""),
        encode_frame(OP_TEXT, b"never"),
    ],
    "continuation-after-fragmented": [
        encode_frame(OP_TEXT, b"hel", fin=False),
        encode_frame(OP_CONT, b"lo"),
        encode_frame(OP_CONT, b"x", fin=False),
        encode_frame(OP_TEXT, b"never"),
    ],
}


@pytest.mark.parametrize("app", ["fastws.apps.echo:echo", "fastws.apps.echo:Echo"])
@pytest.mark.parametrize("burst", sorted(_STRICT_BURSTS))
def test_answers_to_messages_before_a_violation_leave_before_the_close(
    start_server: ServerFactory, app: str, burst: str
) -> None:
    """Messages complete before a protocol violation reach the handler (coroutine or
    listener), its answer goes out before the Close 1002 frame, and nothing sent after the
    violation is delivered."""
    server = start_server(app=app)
    with opened(server) as client:
        client.send_raw(b"".join(_STRICT_BURSTS[burst]))
        frame = client.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"hello")
        assert client.expect_close(1002)[0] == 1002


def test_a_failing_connection_waits_at_most_failure_grace(start_server: ServerFactory) -> None:
    """A handler that never reads what came before the violation does not keep the
    connection: Close 1002 follows after failure_grace."""
    server = start_server(app="tests.apps:never_reads", failure_grace="300ms")
    with opened(server) as client:
        client.send_raw(encode_frame(OP_TEXT, b"hello") + encode_frame(0x3, b""))
        assert client.expect_close(1002)[0] == 1002
