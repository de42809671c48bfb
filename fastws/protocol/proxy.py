"""Who the client is behind a proxy, sans I/O: the PROXY protocol and Forwarded headers.

Two ways a proxy tells the server the address of the client it relays:

- the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2), a header the proxy
  sends on the TCP connection before anything else (`ProxyHeaderParser`);
- HTTP request headers added by an HTTP proxy: ``Forwarded`` (RFC 7239) and the de facto
  ``X-Forwarded-For`` (`forwarded_for`).

Whether to believe them is the caller's policy (a trusted-proxy list): anyone can send
either, so this module only parses. Nothing here touches sockets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "V1_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderParser",
    "forwarded_for",
    "looks_like_proxy_header",
]

#: proxy-protocol.txt 2.2: the binary header's first 12 bytes, chosen to never be valid
#: HTTP (it starts with an empty line, then a NUL).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX: Final = b"PROXY "
#: proxy-protocol.txt 2.1: "a receiver may be configured to support both version 1 and
#: version 2 ... the maximum line lengths the receiver must support including the CRLF
#: are: ... UNKNOWN : 107 chars".
V1_MAX: Final = 107
#: Most bytes of addresses and TLVs accepted after a v2 header's 16 fixed bytes. The spec
#: allows 65535; TLVs (SSL details, unique ids) are small, and we read none of them.
V2_MAX_PAYLOAD: Final = 4096

#: 2.2: the address family nibble: name, address type, bytes per address.
_V2_FAMILIES: Final[dict[int, tuple[str, Any, int]]] = {
    1: ("IPv4", ipaddress.IPv4Address, 4),
    2: ("IPv6", ipaddress.IPv6Address, 16),
}

_V1_LINE = re.compile(
    rb"PROXY (?:UNKNOWN(?: [^\r\n]*)?"
    rb"|(TCP4|TCP6) ([0-9A-Fa-f.:]{2,45}) ([0-9A-Fa-f.:]{2,45}) ([0-9]{1,5}) ([0-9]{1,5}))"
).fullmatch


class ProxyHeaderError(ValueError):
    """The connection did not start with a valid PROXY protocol header.

    proxy-protocol.txt: "the receiver MUST NOT start processing the connection before it
    receives a complete and valid PROXY protocol header" and drops it otherwise.
    """


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy said: the client's (source) and the proxy listener's (destination)
    address, or None for both when it relayed none (v2 LOCAL, v1 UNKNOWN, UNSPEC family):
    then the connection's own endpoints are the real ones."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None


def looks_like_proxy_header(data: bytes | bytearray | memoryview) -> bool | None:
    """Whether `data`, the first bytes of a connection, start a PROXY header: True, False, or
    None while too few bytes have come to tell. No HTTP request starts like either version
    (a GET-only server refuses a "PROXY" method anyway)."""
    head = bytes(data[:12])
    for signature in (V2_SIGNATURE, _V1_PREFIX):
        n = min(len(head), len(signature))
        if head[:n] == signature[:n]:
            return True if n == len(signature) else None
    return False


class ProxyHeaderParser:
    """Reads one PROXY header (v1 or v2) from the start of a connection.

    `feed(data)` returns None until the header is complete, then the `ProxyHeader`; the
    bytes that followed it (the HTTP request) are in `leftover`. Raises ProxyHeaderError
    as soon as the bytes cannot be a valid header. Discard the parser after either.
    With ``required=False`` a connection that starts with anything else is not an error:
    `feed` returns ``ProxyHeader(0, None, None)`` and every byte so far is in `leftover`.
    """

    __slots__ = ("_buf", "leftover", "required")

    def __init__(self, required: bool = True) -> None:
        self._buf = bytearray()
        self.leftover = b""
        self.required = required

    def feed(self, data: bytes | bytearray | memoryview) -> ProxyHeader | None:
        buf = self._buf
        buf += data
        kind = looks_like_proxy_header(buf)
        if kind is None:
            return None
        if not kind:
            if not self.required:
                return self._done(buf, 0, ProxyHeader(0, None, None))
            raise ProxyHeaderError("no PROXY protocol header")
        if buf[:1] == b"P":
            return self._v1(buf)
        return self._v2(buf)

    def _done(self, buf: bytearray, end: int, header: ProxyHeader) -> ProxyHeader:
        self.leftover = bytes(buf[end:])
        self._buf = bytearray()
        return header

    def _v1(self, buf: bytearray) -> ProxyHeader | None:
        # 2.1: "The header ... MUST be terminated by the CRLF sequence" and is at most 107
        # bytes with it, so a line still open at 107 bytes is refused.
        end = buf.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buf) >= V1_MAX or b"\n" in buf:
                raise ProxyHeaderError("PROXY v1 line without CRLF within 107 bytes")
            return None
        match = _V1_LINE(bytes(buf[:end]))
        if match is None:
            raise ProxyHeaderError("malformed PROXY v1 line")
        family = match[1]
        if family is None:  # 2.1: UNKNOWN: "the receiver must ignore anything presented
            return self._done(buf, end + 2, ProxyHeader(1, None, None))  # before the CRLF"
        version = 4 if family == b"TCP4" else 6
        source = _v1_address(match[2], match[4], version)
        destination = _v1_address(match[3], match[5], version)
        return self._done(buf, end + 2, ProxyHeader(1, source, destination))

    def _v2(self, buf: bytearray) -> ProxyHeader | None:
        if len(buf) < 16:
            return None
        ver_cmd, family, length = buf[12], buf[13], int.from_bytes(buf[14:16], "big")
        # 2.2: "The highest four bits contains the version ... \x2 : this indicates
        # version 2 of the protocol. Other values are unassigned and must not be emitted
        # by senders. Receivers must drop connections presenting unexpected values here."
        if ver_cmd >> 4 != 2:
            raise ProxyHeaderError(f"PROXY v2 header with version {ver_cmd >> 4}")
        command = ver_cmd & 0xF
        if command > 1:  # \x0 LOCAL, \x1 PROXY; "other values are unassigned"
            raise ProxyHeaderError(f"PROXY v2 header with command {command}")
        if length > V2_MAX_PAYLOAD:
            raise ProxyHeaderError(f"PROXY v2 header of {length} bytes")
        end = 16 + length
        if len(buf) < end:
            return None
        # LOCAL: "the receiver must accept this connection as valid and must use the real
        # connection endpoints and discard the protocol block including the family".
        if command == 0:
            return self._done(buf, end, ProxyHeader(2, None, None))
        af, transport = family >> 4, family & 0xF
        if transport > 2 or af > 3:
            raise ProxyHeaderError(f"PROXY v2 header with family byte {family:#04x}")
        if af in _V2_FAMILIES:  # AF_INET, AF_INET6: source, destination, their ports
            name, kind, n = _V2_FAMILIES[af]
            if length < 2 * n + 4:
                raise ProxyHeaderError(f"PROXY v2 {name} addresses truncated")
            body = bytes(buf[16:end])
            ports = body[2 * n : 2 * n + 2], body[2 * n + 2 : 2 * n + 4]
            source = (str(kind(body[:n])), int.from_bytes(ports[0], "big"))
            dest = (str(kind(body[n : 2 * n])), int.from_bytes(ports[1], "big"))
            return self._done(buf, end, ProxyHeader(2, source, dest))
        # AF_UNSPEC ("the receiver should ... use the real connection endpoints") and
        # AF_UNIX (a path, not an address a handler could use as a client's): no address.
        return self._done(buf, end, ProxyHeader(2, None, None))


def _v1_address(host: bytes, port: bytes, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host.decode("ascii"))
    except ValueError:
        raise ProxyHeaderError("malformed address in PROXY v1 line") from None
    number = int(port)
    # 2.1: the port is "a 16-bit unsigned integer ... without leading zeroes".
    if address.version != version or number > 65535 or (port[:1] == b"0" and len(port) > 1):
        raise ProxyHeaderError("malformed address in PROXY v1 line")
    return str(address), number


# ---------------------------------------------------------------------------
# Forwarded (RFC 7239) and X-Forwarded-For

# RFC 7239 4: forwarded-pair = token "=" value, value = token / quoted-string.
_PAIR = re.compile(r'[ \t]*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,"]*)[ \t]*')


def _node(value: str) -> tuple[str, int] | None:
    """An RFC 7239 6 node (``192.0.2.43``, ``"[2001:db8::1]:4711"``) or an X-Forwarded-For
    item, as (address, port; 0 when none); None for "unknown", obfuscated ids or garbage."""
    value = value.strip(" \t")
    if value.startswith("["):  # IPv6, maybe with a port
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not port:
            return None
    elif value.count(":") == 1:  # IPv4 with a port
        host, _, port = value.partition(":")
    else:  # IPv4, or a bare IPv6 (X-Forwarded-For writes them so)
        host, port = value, ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if port and not (port.isdigit() and int(port) <= 65535):
        return None
    return str(address), int(port) if port else 0


def _forwarded_nodes(values: Sequence[str]) -> list[tuple[str, int] | None] | None:
    nodes: list[tuple[str, int] | None] = []
    for value in values:
        for element in value.split(","):
            found: tuple[str, int] | None = None
            has_for = False
            for pair in element.split(";"):
                match = _PAIR.fullmatch(pair)
                if match is None:
                    if pair.strip(" \t"):
                        return None  # malformed: believe none of it
                    continue
                if match[1].lower() == "for":
                    raw = match[2]
                    if raw.startswith('"'):
                        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                    found, has_for = _node(raw), True
            if has_for:
                nodes.append(found)
    return nodes


def forwarded_for(
    forwarded: Sequence[str], x_forwarded_for: Sequence[str]
) -> list[tuple[str, int] | None] | None:
    """The chain of client addresses the HTTP proxies recorded, nearest the client first.

    From ``Forwarded`` (RFC 7239 ``for=`` parameters) when the request has it, else from
    ``X-Forwarded-For``; every field of the name, in order. An entry that is not an IP
    address ("unknown", an obfuscated id) is None. Returns None when neither header is
    present, or when Forwarded is malformed.
    """
    if forwarded:
        return _forwarded_nodes(forwarded)
    if not x_forwarded_for:
        return None
    return [_node(item) for value in x_forwarded_for for item in value.split(",")]
