"""A recording TCP proxy: what a real browser puts on the wire, seen from outside both ends.

Put between a browser and a fastws server, it forwards bytes unchanged and records the client's
opening handshake request exactly as sent, the server's response head, and the header of every
frame each side sends (FIN, RSV1, opcode, payload length). That is how the tests know that
Chromium really fragmented a large message, and what its upgrade request looks like, instead of
assuming it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["FrameHeader", "ProxiedConnection", "RecordingProxy", "messages", "response_field"]

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 1 << 16


@dataclass(frozen=True)
class FrameHeader:
    fin: bool
    rsv1: bool
    opcode: int
    length: int


class FrameScanner:
    """Reads frame headers out of a byte stream and skips their payloads without keeping them."""

    def __init__(self) -> None:
        self.frames: list[FrameHeader] = []
        self._head = bytearray()  # an incomplete frame header
        self._skip = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            before = len(self._head)
            self._head += view[: 14 - before]  # a header is at most 14 bytes
            parsed = self._parse_header(self._head)
            if parsed is None:
                view = view[len(view) :]
                continue
            header, size = parsed
            self.frames.append(header)
            self._skip = header.length
            self._head.clear()
            view = view[size - before :]

    @staticmethod
    def _parse_header(head: bytearray) -> tuple[FrameHeader, int] | None:
        if len(head) < 2:
            return None
        b0, b1 = head[0], head[1]
        length, size = b1 & 0x7F, 2
        if length == 126:
            if len(head) < 4:
                return None
            (length,), size = struct.unpack_from("!H", head, 2), 4
        elif length == 127:
            if len(head) < 10:
                return None
            (length,), size = struct.unpack_from("!Q", head, 2), 10
        if b1 & 0x80:
            size += 4  # masking key
        if len(head) < size:
            return None
        return FrameHeader(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, length), size


@dataclass
class ProxiedConnection:
    """What one connection through the proxy carried."""

    request_head: bytes = b""  # up to and including the blank line
    response_head: bytes = b""
    client: FrameScanner = field(default_factory=FrameScanner)
    server: FrameScanner = field(default_factory=FrameScanner)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def client_frames(self) -> list[FrameHeader]:
        return self.client.frames

    @property
    def server_frames(self) -> list[FrameHeader]:
        return self.server.frames


class RecordingProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`upstream_port`.

    Use as a context manager; `close()` stops it and closes every connection it holds.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.connections: list[ProxiedConnection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        self._start(self._accept_loop)

    def url_for(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            record = ProxiedConnection()
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self.connections.append(record)
            remaining = [2]

            def finished(
                record: ProxiedConnection = record, remaining: list[int] = remaining
            ) -> None:
                with self._lock:
                    remaining[0] -= 1
                    if not remaining[0]:
                        record.done.set()

            self._start(self._pump, client, server, record, True, finished)
            self._start(self._pump, server, client, record, False, finished)

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        record: ProxiedConnection,
        from_client: bool,
        finished: object,
    ) -> None:
        head = bytearray()
        in_head = True
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
                if in_head:
                    head += data
                    end = head.find(HEAD_END)
                    if end < 0 and len(head) < MAX_HEAD:
                        continue
                    in_head = False
                    end = end + len(HEAD_END) if end >= 0 else len(head)
                    if from_client:
                        record.request_head = bytes(head[:end])
                        record.client.feed(bytes(head[end:]))
                    else:
                        record.response_head = bytes(head[:end])
                        record.server.feed(bytes(head[end:]))
                else:
                    (record.client if from_client else record.server).feed(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)
        finally:
            finished()  # type: ignore[operator]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
            threads = list(self._threads)
        # shutdown() wakes a thread blocked in accept(); close() alone may not.
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(5)


def messages(frames: list[FrameHeader]) -> list[list[FrameHeader]]:
    """Group data frames into messages (control frames, which may interleave, are left out)."""
    grouped: list[list[FrameHeader]] = []
    current: list[FrameHeader] = []
    for frame in frames:
        if frame.opcode >= 8:
            continue
        current.append(frame)
        if frame.fin:
            grouped.append(current)
            current = []
    return grouped


def response_field(head: bytes, name: str) -> str:
    """One header field of a recorded HTTP response head ("" when absent)."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == name:
            return value.strip()
    return ""
