"""fastws.protocol.proxy: the PROXY protocol header (v1, v2) and Forwarded/X-Forwarded-For.

Valid headers are the ones HAProxy's proxy-protocol.txt shows; bad ones must raise at once
(the server then drops the connection) rather than wait or guess.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from fastws.protocol.proxy import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    forwarded_for,
    looks_like_proxy_header,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def v2_inet(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if s.version == 4 else 0x21
    return v2(1, family, s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs)


def feed_bytewise(data: bytes, required: bool = True) -> tuple[ProxyHeader, bytes]:
    parser = ProxyHeaderParser(required)
    for i in range(len(data)):
        header = parser.feed(data[i : i + 1])
        if header is not None:
            return header, parser.leftover + data[i + 1 :]
    raise AssertionError("header never completed")


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
            ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.7", 443)),
        ),
        (
            b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
            ProxyHeader(1, ("2001:db8::1", 1), ("::1", 65535)),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, None, None)),
        (
            v2_inet("192.0.2.1", "198.51.100.7", 56324, 443),
            ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.7", 443)),
        ),
        (
            v2_inet("2001:db8::7", "::1", 4711, 80, tlvs=b"\x04\x00\x02ab"),  # a NOOP TLV
            ProxyHeader(2, ("2001:db8::7", 4711), ("::1", 80)),
        ),
        (v2(0, 0x00, b""), ProxyHeader(2, None, None)),  # LOCAL: a health check
        (v2(0, 0x11, bytes(12)), ProxyHeader(2, None, None)),  # LOCAL ignores addresses
        (v2(1, 0x00, b""), ProxyHeader(2, None, None)),  # UNSPEC
        (v2(1, 0x31, bytes(216)), ProxyHeader(2, None, None)),  # AF_UNIX: no IP to use
    ],
)
def test_valid_headers_parse_whole_and_byte_by_byte(wire: bytes, expected: ProxyHeader) -> None:
    """Each version's header gives the client's address, also when it arrives in pieces,
    and the request that follows it is left over intact."""
    parser = ProxyHeaderParser()
    assert parser.feed(wire + REQUEST) == expected
    assert parser.leftover == REQUEST
    assert feed_bytewise(wire + REQUEST) == (expected, REQUEST)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),  # a TLS ClientHello
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n", "malformed PROXY v1"),
        (b"PROXY TCP4 2001:db8::1 ::1 1 2\r\n", "malformed address"),  # family mismatch
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 1\r\n", "malformed address"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 080 1\r\n", "malformed address"),
        (b"PROXY TCP4 999.0.2.1 198.51.100.7 1 1\r\n", "malformed address"),
        (b"PROXY UDP4 192.0.2.1 198.51.100.7 1 1\r\n", "malformed PROXY v1"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1 1\n", "without CRLF"),
        (b"PROXY UNKNOWN " + b"x" * 100, "without CRLF"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command 2"),
        (v2(1, 0x41, bytes(12)), "family byte"),
        (v2(1, 0x11, bytes(8)), "IPv4 addresses truncated"),
        (v2(1, 0x21, bytes(20)), "IPv6 addresses truncated"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "65535 bytes"),
    ],
)
def test_invalid_headers_raise_as_soon_as_they_are_seen(wire: bytes, why: str) -> None:
    """The spec: the receiver drops a connection whose header is missing or invalid; it
    does not wait for more bytes once the ones it has cannot be a valid header."""
    with pytest.raises(ProxyHeaderError, match=why):
        ProxyHeaderParser().feed(wire)


def test_optional_mode_passes_anything_else_through() -> None:
    """With the header optional, a connection without one is the request itself."""
    assert feed_bytewise(REQUEST, required=False) == (ProxyHeader(0, None, None), REQUEST)
    wire = b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n"
    assert feed_bytewise(wire + REQUEST, required=False)[0].source == ("192.0.2.1", 1)


def test_looks_like_proxy_header_waits_for_enough_bytes() -> None:
    """No HTTP request starts like either signature; a prefix of one is undecided."""
    assert looks_like_proxy_header(b"") is None
    assert looks_like_proxy_header(b"PROX") is None
    assert looks_like_proxy_header(V2_SIGNATURE[:5]) is None
    assert looks_like_proxy_header(b"PROXY ") is True
    assert looks_like_proxy_header(V2_SIGNATURE) is True
    assert looks_like_proxy_header(b"GET ") is False
    assert looks_like_proxy_header(b"\r\n\r\nX") is False


@pytest.mark.parametrize(
    ("forwarded", "xff", "chain"),
    [
        ([], [], None),
        ([], ["192.0.2.60"], [("192.0.2.60", 0)]),
        (
            [],
            ["192.0.2.60, 10.0.0.1", "10.0.0.2"],
            [("192.0.2.60", 0), ("10.0.0.1", 0), ("10.0.0.2", 0)],
        ),
        ([], ["2001:db8::1, unknown"], [("2001:db8::1", 0), None]),
        ([], ["192.0.2.60:1234"], [("192.0.2.60", 1234)]),
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], ["6.6.6.6"], [("192.0.2.60", 0)]),
        (['for="[2001:db8:cafe::17]:4711"'], [], [("2001:db8:cafe::17", 4711)]),
        (["For=192.0.2.43, for=198.51.100.17"], [], [("192.0.2.43", 0), ("198.51.100.17", 0)]),
        (["for=unknown", "for=_hidden"], [], [None, None]),
        (["proto=https"], ["192.0.2.60"], []),  # Forwarded wins, even without a for=
        (["for=192.0.2.43;;garbage"], [], None),  # malformed: believed not at all
    ],
)
def test_forwarded_for_reads_rfc7239_then_x_forwarded_for(
    forwarded: list[str], xff: list[str], chain: list[tuple[str, int] | None] | None
) -> None:
    """The chain of addresses the proxies recorded, nearest the client first."""
    assert forwarded_for(forwarded, xff) == chain
