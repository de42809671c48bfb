"""Believing a proxy: which peers are trusted, and the client address they name.

The parsing is sans-I/O (`protocol.proxy`); this module holds the policy a server applies
to each connection: `Proxies.client(peer, headers)` for Forwarded / X-Forwarded-For, and
`Proxies.reader(peer)` for the PROXY protocol header that comes before the request.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from ..protocol.http11 import Headers
from ..protocol.proxy import ProxyHeaderError, ProxyHeaderParser, forwarded_for
from ..stats import counters

__all__ = ["Proxies", "drop"]

logger = logging.getLogger("fastws")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Proxies:
    """The trusted-proxy allow-list (`forwarded_allow_ips`) and the PROXY protocol mode."""

    __slots__ = ("_any", "_networks", "mode")

    def __init__(self, allow: Sequence[str], mode: str = "off") -> None:
        self._any = "*" in allow
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in allow if item != "*"
        )
        self.mode = mode  # off, optional or require (see Config.proxy_protocol)

    @property
    def active(self) -> bool:
        """Whether connections need any of this (else the server skips it entirely)."""
        return self._any or bool(self._networks) or self.mode != "off"

    def trusts(self, address: Any) -> bool:
        """Whether `address` (a peer address tuple, or a host string) is a trusted proxy."""
        if self._any:
            return True
        host = address[0] if isinstance(address, tuple) else address
        if not isinstance(host, str) or not self._networks:
            return False  # a Unix socket peer is trusted by "*" only
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self._networks)

    def reader(self) -> ProxyHeaderParser | None:
        """A parser for the PROXY header a new connection must (or may) start with."""
        if self.mode == "off":
            return None
        return ProxyHeaderParser(required=self.mode == "require")

    def take_header(
        self, reader: ProxyHeaderParser, data: bytes | memoryview, peer: Any
    ) -> tuple[bytes | None, tuple[str, int] | None]:
        """Feed the start of a connection to its PROXY header `reader`: (None, None) until
        the header is complete, then (the bytes after it, the client it names if believed,
        else None). Raises ProxyHeaderError for a missing or malformed header."""
        header = reader.feed(data)
        if header is None:
            return None, None
        source = header.source
        if source is not None and not (self.mode == "require" or self.trusts(peer)):
            source = None  # optional mode: anyone could have sent it
        return reader.leftover, source

    def client_of(self, peer: Any, raw: list[tuple[bytes, bytes]]) -> Any:
        """`client` for a request whose headers are byte pairs (ASGI's); the peer itself
        when no trusted proxy names another client."""
        if not self.active or not self.trusts(peer):
            return peer
        fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
        client = self.client(peer, Headers(fields))
        return peer if client is None else client

    def client(self, peer: Any, headers: Headers) -> tuple[str, int] | None:
        """The client address the trusted proxies in front of `peer` recorded, or None.

        Walks the Forwarded / X-Forwarded-For chain from the nearest hop back: each hop
        that is trusted vouches for the one before it; the first address that is not
        trusted is the client (a client can write anything at the far end of the chain,
        so nothing further is believed). A chain of trusted proxies only: its first one.
        An "unknown" or malformed entry where the walk needs it: None (keep the peer).
        """
        if not self.trusts(peer):
            return None
        chain = forwarded_for(headers.get_all("Forwarded"), headers.get_all("X-Forwarded-For"))
        if not chain:
            return None
        for node in reversed(chain):
            if node is None:
                return None
            if not self.trusts(node[0]):
                return node
        return chain[0]


def drop(transport: Any, peer: str, exc: ProxyHeaderError) -> None:
    """End a connection whose PROXY header is missing or invalid: one log line, counted as a
    refused handshake, no answer (it is not HTTP yet). proxy-protocol.txt: the receiver
    "MUST NOT start processing the connection before it receives a complete and valid
    PROXY protocol header"."""
    logger.info("connection from %s refused: %s", peer, exc)
    counters.values[counters.HANDSHAKES_REFUSED] += 1
    if transport is not None:
        transport.close()
