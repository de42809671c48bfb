"""Fuzz targets for the sans-I/O protocol core: whatever bytes a peer sends, the parsers only
ever produce their documented results, never an unexpected exception.

`one_input(data)` is the entry point for atheris (see fuzz_protocol.py) and is also run on
fixed seeds by test_fuzz.py, so it works without atheris. The first byte chooses the target
and options, the second how the rest is split into reads (bugs hide at chunk boundaries).
"""

from __future__ import annotations

from fastws.assembler import RegionAssembler
from fastws.message import Message
from fastws.protocol.connection import Close, Connection, Failure, Pong, State
from fastws.protocol.handshake import (
    HandshakeError,
    Request,
    RequestParser,
    check_upgrade,
    error_response,
)


def _chunks(data: bytes, step: int) -> list[bytes]:
    step = max(1, step)
    return [data[i : i + step] for i in range(0, len(data), step)] or [b""]


def fuzz_connection(data: bytes, *, client: bool, step: int, small: bool) -> None:
    """Feed frames in chunks; check the events and the state after each chunk."""
    conn = Connection(
        client=client,
        max_message_size=1024 if small else 1 << 20,
        max_fragments=8 if small else 100_000,
        assembler=RegionAssembler(),  # the servers' (mmap regions from MMAP_MIN on)
    )
    closed = False
    for chunk in _chunks(data, step):
        conn.receive_data(chunk)
        while conn._remaining and (target := conn.payload_target()) is not None:
            # The direct-write path a BufferedProtocol uses for large payloads.
            n = min(len(target), 7)
            target[:n] = b"\x00" * n
            conn.payload_written(n)
        for event in conn.events:
            assert not closed, f"event {event!r} after the connection closed"
            assert isinstance(event, str | bytes | Message | Pong | Close), event
            if isinstance(event, Message):
                event.release()
            if isinstance(event, Close):
                closed = True
                assert conn.state is State.CLOSED
                if isinstance(event, Failure):
                    assert 1000 <= event.code <= 1015 and event.code not in (1005, 1006), event
        conn.events = []
        for frame in conn.data_to_send():
            assert isinstance(frame, bytes) and len(frame) >= 2
    conn.receive_eof()
    assert conn.state is State.CLOSED


def fuzz_handshake(data: bytes, *, step: int) -> None:
    """Feed an HTTP request in chunks: a Request, a HandshakeError with a 4xx, or more bytes."""
    parser = RequestParser(max_request_line=512, max_headers=16, max_header_size=2048)
    for chunk in _chunks(data, step):
        try:
            request = parser.feed(chunk)
        except HandshakeError as exc:
            assert 400 <= exc.status < 500, exc.status
            error_response(exc).serialize()
            return
        if request is not None:
            assert isinstance(request, Request)
            try:
                check_upgrade(request)
            except HandshakeError as exc:
                assert 400 <= exc.status < 500, exc.status
                error_response(exc).serialize()
            return


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, step, rest = data[0], data[1], data[2:]
    if mode & 0x80:
        fuzz_handshake(rest, step=step)
    else:
        fuzz_connection(rest, client=bool(mode & 1), step=step, small=bool(mode & 2))
