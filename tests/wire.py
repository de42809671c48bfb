"""A tiny blocking raw-socket WebSocket client for the integration tests.

It exists to say things a well-behaved client library refuses to say (unmasked frames, reserved
bits, lying length fields, half handshakes...) and to look at exactly what the server answers.

It is deliberately independent of fastws: the frame encoder/decoder and the handshake code here
are written from RFC 6455 directly, so they check fastws instead of agreeing with it by
construction. `tests/test_wire.py` checks this module against the RFC's own examples and against
the `websockets` library.

Everything blocks with a timeout (`TIMEOUT`), so a server that fails to answer makes the test fail
instead of hanging. Reading helpers raise `AssertionError` with a description of what was expected.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "GUID",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "RSV1",
    "RSV2",
    "RSV3",
    "TIMEOUT",
    "Frame",
    "HTTPResponse",
    "PeerClosed",
    "WireClient",
    "accept_key",
    "close_payload",
    "decode_frame",
    "encode_frame",
    "make_key",
    "mask_payload",
    "parse_close",
]

#: Upper bound for any single wait on the server. Generous: it only exists so that a broken
#: server fails the test instead of hanging it; no test relies on it being short.
TIMEOUT = 5.0

#: RFC 6455 1.3 / 4.2.2: the GUID concatenated to Sec-WebSocket-Key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 6455 5.2 opcodes.
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Values of the 3-bit RSV field as passed to `encode_frame(rsv=...)`.
RSV1 = 0b100
RSV2 = 0b010
RSV3 = 0b001


class PeerClosed(AssertionError):
    """The server closed (or reset) the TCP connection while we were waiting for data."""


# ---------------------------------------------------------------------------------------------
# Frames (RFC 6455 5.2)
# ---------------------------------------------------------------------------------------------


def mask_payload(payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """RFC 6455 5.3: octet i of the result is octet i of the payload XOR octet i % 4 of the key.

    The XOR is done on one big integer, which is fast enough for the megabytes some tests send.
    Masking is an involution, so this also unmasks.
    """
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    masking_key: bytes | None = None,
    length_override: int | None = None,
) -> bytes:
    """Build one frame byte by byte, as RFC 6455 5.2 draws it.

    `rsv` is the 3-bit RSV field (`RSV1 | RSV3`, ...). `opcode` may be any 4-bit value, reserved
    ones included. `length_override` writes that number in the length field instead of
    len(payload) (the payload bytes are still appended, possibly none): it is how the tests declare
    huge frames without sending them. The length is always encoded minimally for the value written
    (7 bits, then 16 bits from 126, then 64 bits from 65536).
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError("opcode is 4 bits")
    if not 0 <= rsv <= 0b111:
        raise ValueError("rsv is 3 bits")
    length = len(payload) if length_override is None else length_override
    if not 0 <= length < 1 << 64:
        raise ValueError("the length field is at most 64 bits")
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if length <= 125:
        header = bytes((b0, mask_bit | length))
    elif length <= 0xFFFF:
        header = bytes((b0, mask_bit | 126)) + struct.pack("!H", length)
    else:
        header = bytes((b0, mask_bit | 127)) + struct.pack("!Q", length)
    if not mask:
        return header + bytes(payload)
    key = os.urandom(4) if masking_key is None else masking_key
    return header + key + mask_payload(payload, key)


def close_payload(code: int | None = None, reason: str | bytes = b"") -> bytes:
    """RFC 6455 5.5.1 close payload: 2-byte code then the reason (bytes are sent as they are)."""
    if code is None:
        if reason:
            raise ValueError("a reason needs a code")
        return b""
    raw = reason.encode() if isinstance(reason, str) else reason
    return struct.pack("!H", code) + raw


@dataclass(frozen=True)
class Frame:
    """A decoded frame. `payload` is unmasked; `masking_key` is None for unmasked frames."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masking_key: bytes | None = None
    #: False if the length field used more bytes than the RFC's "minimal number of bytes".
    minimal_length: bool = True

    @property
    def masked(self) -> bool:
        return self.masking_key is not None

    @property
    def is_control(self) -> bool:
        return self.opcode >= 0x8


def decode_frame(data: bytes | bytearray | memoryview) -> tuple[Frame, int] | None:
    """Decode the frame at the start of `data`: (frame, bytes consumed), or None if incomplete."""
    view = memoryview(data)
    if len(view) < 2:
        return None
    b0, b1 = view[0], view[1]
    length = b1 & 0x7F
    pos = 2
    minimal = True
    if length == 126:
        if len(view) < 4:
            return None
        (length,) = struct.unpack_from("!H", view, 2)
        pos = 4
        minimal = length > 125
    elif length == 127:
        if len(view) < 10:
            return None
        (length,) = struct.unpack_from("!Q", view, 2)
        pos = 10
        minimal = length > 0xFFFF
    key = None
    if b1 & 0x80:
        if len(view) < pos + 4:
            return None
        key = bytes(view[pos : pos + 4])
        pos += 4
    if len(view) < pos + length:
        return None
    payload = bytes(view[pos : pos + length])
    if key is not None:
        payload = mask_payload(payload, key)
    frame = Frame(
        fin=bool(b0 & 0x80),
        rsv=(b0 >> 4) & 0b111,
        opcode=b0 & 0x0F,
        payload=payload,
        masking_key=key,
        minimal_length=minimal,
    )
    return frame, pos + length


# ---------------------------------------------------------------------------------------------
# Opening handshake (RFC 6455 4)
# ---------------------------------------------------------------------------------------------


def make_key() -> str:
    """RFC 6455 4.1: a base64-encoded random 16-byte value."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """RFC 6455 4.2.2: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class HTTPResponse(NamedTuple):
    """An HTTP response head and body. `headers` maps lower-case names to values (repeated
    fields joined with ", ")."""

    status: int
    headers: dict[str, str]
    body: bytes


HeaderSpec = Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None


def _header_items(headers: HeaderSpec) -> list[tuple[str, str | None]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def _token_list(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class WireClient:
    """One raw TCP connection to the server, with a read buffer shared by HTTP and frames.

    Use as a context manager (or call `close()`): the socket is always closed.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.key: str | None = None
        self.response: HTTPResponse | None = None
        #: Control frames `recv_message` met and stepped over (pings are answered if asked to).
        self.control_frames: list[Frame] = []

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    # -- raw bytes --------------------------------------------------------------------------

    def send_raw(self, data: bytes | bytearray | memoryview) -> None:
        self.sock.sendall(data)

    def _fill(self, what: str, timeout: float | None = None) -> None:
        """Read more bytes into the buffer; raise PeerClosed on EOF/reset."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {self.sock.gettimeout()} s waiting for {what}"
            ) from None
        except ConnectionResetError:
            raise PeerClosed(f"connection reset by the server while waiting for {what}") from None
        if not chunk:
            raise PeerClosed(f"the server closed the connection while waiting for {what}")
        self.buffer += chunk

    def recv_exactly(self, n: int, what: str = "data") -> bytes:
        while len(self.buffer) < n:
            self._fill(what)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def recv_until_closed(self, timeout: float | None = None, limit: int = 1 << 20) -> bytes:
        """Everything the server sends until it closes the connection (a reset counts as a
        close). Fails if the server keeps the connection open past the timeout."""
        data = bytes(self.buffer)
        self.buffer.clear()
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError(
                    f"the server did not close the connection within {self.sock.gettimeout()} s "
                    f"(received {len(data)} bytes: {data[:200]!r})"
                ) from None
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
            if len(data) > limit:
                raise AssertionError(f"the server sent more than {limit} bytes without closing")

    def assert_server_closes_tcp(self, timeout: float | None = None) -> None:
        """The server closes the TCP connection and sends nothing more first.

        RFC 6455 5.5.1: after sending a Close frame an endpoint "MUST NOT send any more data
        frames"; 7.1.1: the server should close the underlying TCP connection first.
        """
        rest = self.recv_until_closed(timeout)
        assert rest == b"", f"the server sent data after its close frame: {rest[:200]!r}"

    # -- HTTP -------------------------------------------------------------------------------

    def build_request(
        self,
        path: str = "/",
        headers: HeaderSpec = None,
        *,
        method: str = "GET",
        version: str = "HTTP/1.1",
        key: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        """A handshake request. `headers` overrides the defaults by name (case-insensitive;
        a value of None removes the header), unknown names are appended; `extra_headers` are
        appended as they are (to repeat a header)."""
        self.key = make_key() if key is None else key
        fields: list[tuple[str, str | None]] = [
            ("Host", f"{self.host}:{self.port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key),
            ("Sec-WebSocket-Version", "13"),
        ]
        for name, value in _header_items(headers):
            for i, (existing, _) in enumerate(fields):
                if existing.lower() == name.lower():
                    fields[i] = (existing, value)
                    break
            else:
                fields.append((name, value))
        fields.extend(extra_headers)
        lines = [f"{method} {path} {version}"]
        lines += [f"{name}: {value}" for name, value in fields if value is not None]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def read_http_response(self, max_head: int = 1 << 16) -> HTTPResponse:
        """Read one response: status line, headers, and a body delimited by Content-Length, or
        (for an error without Content-Length) by the server closing the connection.

        Bytes after the head of a 101 response stay in the buffer: they are frames.
        """
        while b"\r\n\r\n" not in self.buffer:
            assert len(self.buffer) <= max_head, "HTTP response head too long"
            self._fill("an HTTP response")
        end = self.buffer.index(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        assert len(parts) >= 2, f"malformed status line {status_line!r}"
        assert parts[0] == "HTTP/1.1", f"unexpected HTTP version in {status_line!r}"
        assert parts[1].isdigit() and len(parts[1]) == 3, f"malformed status in {status_line!r}"
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), f"malformed header line {line!r}"
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if status == 101:
            return HTTPResponse(status, headers, b"")
        if "content-length" in headers:
            body = self.recv_exactly(int(headers["content-length"]), "the HTTP response body")
        else:
            body = self.recv_until_closed()
        return HTTPResponse(status, headers, body)

    def handshake(
        self,
        path: str = "/",
        headers: HeaderSpec = None,
        **request_options: object,
    ) -> HTTPResponse:
        """Send a valid opening handshake and check the server's 101 against RFC 6455 4.2.2."""
        self.send_raw(self.build_request(path, headers, **request_options))  # type: ignore[arg-type]
        response = self.read_http_response()
        assert response.status == 101, f"expected 101, got {response}"
        assert response.headers.get("upgrade", "").lower() == "websocket", response
        assert "upgrade" in _token_list(response.headers.get("connection", "")), response
        assert self.key is not None
        assert response.headers.get("sec-websocket-accept") == accept_key(self.key), response
        self.response = response
        return response

    # -- frames -----------------------------------------------------------------------------

    def send_frame(
        self,
        opcode: int,
        payload: bytes | bytearray | memoryview = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
        masking_key: bytes | None = None,
        length_override: int | None = None,
    ) -> None:
        self.send_raw(
            encode_frame(
                opcode,
                payload,
                fin=fin,
                rsv=rsv,
                mask=mask,
                masking_key=masking_key,
                length_override=length_override,
            )
        )

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        self.send_frame(OP_BINARY, data)

    def send_close(self, code: int | None = 1000, reason: str | bytes = b"") -> None:
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """The next frame from the server, checked against what a server may send:
        RFC 6455 5.1 "A server MUST NOT mask any frames", 5.2 RSV bits 0 without extensions
        and "the minimal number of bytes MUST be used to encode the length", 5.5 control
        frames short and unfragmented."""
        while True:
            decoded = decode_frame(self.buffer)
            if decoded is not None:
                break
            self._fill("a frame", timeout)
        frame, consumed = decoded
        del self.buffer[:consumed]
        assert not frame.masked, f"the server sent a masked frame: {frame}"
        assert frame.rsv == 0, f"the server set RSV bits without an extension: {frame}"
        assert frame.minimal_length, f"the server used a non-minimal length encoding: {frame}"
        assert frame.opcode in (0, 1, 2, 8, 9, 10), f"the server used a reserved opcode: {frame}"
        if frame.is_control:
            assert frame.fin, f"the server fragmented a control frame: {frame}"
            assert len(frame.payload) <= 125, f"the server sent a long control frame: {frame}"
        return frame

    def recv_message(self, *, answer_pings: bool = True) -> tuple[int, bytes]:
        """The next data message as (OP_TEXT or OP_BINARY, payload), reassembling fragments.

        Control frames met on the way are kept in `control_frames`; pings are answered with a
        pong carrying the same payload unless `answer_pings` is False. A close frame fails.
        """
        opcode: int | None = None
        parts: list[bytes] = []
        while True:
            frame = self.recv_frame()
            if frame.opcode == OP_CLOSE:
                raise AssertionError(f"expected a message, got close {parse_close(frame)}")
            if frame.is_control:
                self.control_frames.append(frame)
                if frame.opcode == OP_PING and answer_pings:
                    self.send_frame(OP_PONG, frame.payload)
                continue
            if opcode is None:
                assert frame.opcode in (OP_TEXT, OP_BINARY), f"message starts with {frame}"
                opcode = frame.opcode
            else:
                assert frame.opcode == OP_CONT, f"new message inside a fragmented one: {frame}"
            parts.append(frame.payload)
            if frame.fin:
                payload = b"".join(parts)
                if opcode == OP_TEXT:
                    payload.decode()  # the server must send valid UTF-8 (RFC 6455 8.1)
                return opcode, payload

    def recv_close(self, timeout: float | None = None) -> tuple[int | None, str]:
        """The next frame must be a close: return (code or None if empty, reason)."""
        frame = self.recv_frame(timeout)
        assert frame.opcode == OP_CLOSE, f"expected a close frame, got {frame}"
        return parse_close(frame)

    def expect_close(self, *codes: int | None) -> tuple[int | None, str]:
        """The server sends a close frame with one of `codes`, then closes TCP."""
        code, reason = self.recv_close()
        assert code in codes, f"expected close code in {codes}, got {code} {reason!r}"
        self.assert_server_closes_tcp()
        return code, reason

    def echo(self, opcode: int = OP_TEXT, payload: bytes = b"ping?") -> None:
        """Send one message and check it comes back unchanged (for an echo server)."""
        self.send_frame(opcode, payload)
        assert self.recv_message() == (opcode, payload)


def parse_close(frame: Frame) -> tuple[int | None, str]:
    """RFC 6455 5.5.1 close payload as sent by the server, checked."""
    payload = frame.payload
    if not payload:
        return None, ""
    assert len(payload) >= 2, f"the server sent a 1-byte close payload: {payload!r}"
    (code,) = struct.unpack("!H", payload[:2])
    assert code not in (1005, 1006, 1015), f"the server sent reserved close code {code}"
    return code, payload[2:].decode()
