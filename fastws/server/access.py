"""The access log: one line per connection, written when it ends (``--access-log``).

Bytes in and out are the kernel's counts for the connection's socket (Linux TCP_INFO:
tcpi_bytes_received, and tcpi_bytes_sent - tcpi_bytes_retrans + tcpi_notsent_bytes),
read once when the connection ends, so the per-message path does no work for them. They
count what crossed the socket: the HTTP head, WebSocket framing, and TLS records with TLS.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

from ..logs import ACCESS_LOGGER
from ..protocol.http11 import Request

__all__ = ["log_connection", "log_line", "socket_bytes"]

logger = logging.getLogger(ACCESS_LOGGER)

_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
# struct tcp_info (linux/tcp.h): offsets of the fields read, and the size that has them all
# (tcpi_bytes_sent and tcpi_bytes_retrans came with Linux 4.19).
_RECEIVED, _NOTSENT, _SENT = 128, 144, 200
_TCP_INFO_SIZE = 216
_u64_pair = struct.Struct("=QQ").unpack_from


def socket_bytes(transport: Any) -> tuple[int, int] | None:
    """(bytes received, bytes written) on the transport's TCP socket so far, or None where
    the kernel cannot say (a Unix socket, an old kernel, a closed socket)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or _TCP_INFO is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE:
        return None
    received = int.from_bytes(info[_RECEIVED : _RECEIVED + 8], "little")
    notsent = int.from_bytes(info[_NOTSENT : _NOTSENT + 4], "little")
    sent, retransmitted = _u64_pair(info, _SENT)
    return received, sent - retransmitted + notsent


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "-"


def log_connection(
    transport: Any,
    remote_address: Any,
    request: Request | None,
    status: int | None,
    subprotocol: str | None,
    close_code: int | None,
    duration: float,
) -> None:
    """Write the access log line of a connection that is ending (its socket's byte counts).

    ``status`` is 101 for a WebSocket, the HTTP status of any other answer, None when the
    connection ended before one was sent.
    """
    counts = socket_bytes(transport)
    log_line(remote_address, request, status, subprotocol, close_code, duration, counts)


def log_line(
    remote_address: Any,
    request: Request | None,
    status: int | None,
    subprotocol: str | None,
    close_code: int | None,
    duration: float,
    counts: tuple[int, int] | None,
) -> None:
    """Write one access log line: a connection's, or one HTTP request's of a keep-alive
    connection (an ASGI application's, see server.hooks.HTTPGate). `counts`: bytes
    (received, sent), None where the kernel cannot say.

    The path is logged without its query string, which often carries credentials.
    """
    fields = {
        "client": _address(remote_address),
        "method": request.method if request is not None else None,
        "path": request.path if request is not None else None,
        "status": status,
        "subprotocol": subprotocol,
        "close_code": close_code,
        "duration": round(duration, 6),
        "bytes_in": counts[0] if counts is not None else None,
        "bytes_out": counts[1] if counts is not None else None,
    }
    request_line = f"{fields['method']} {fields['path']}" if request is not None else "-"
    logger.info(
        '%s "%s" %s subprotocol=%s close=%s duration=%.3fs in=%s out=%s',
        fields["client"],
        request_line,
        status if status is not None else "-",
        subprotocol or "-",
        close_code if close_code is not None else "-",
        duration,
        fields["bytes_in"] if counts is not None else "-",
        fields["bytes_out"] if counts is not None else "-",
        extra=fields,
    )
