"""The client's side of the opening handshake, sans I/O: a URI and options in, the upgrade
request's bytes out, the server's response bytes in, the negotiated connection out.

    handshake = ClientHandshake(parse_uri("ws://127.0.0.1:8000/chat"), subprotocols=["chat"])
    sock.sendall(handshake.request)
    while handshake.receive_data(sock.recv(65536)) is None:  # InvalidHandshake: refuse
        pass
    handshake.subprotocol, handshake.deflate, handshake.leftover  # -> a client Connection

Both clients use it: `fastws.connect` (asyncio) and `fastws.sync.connect` (blocking sockets,
gevent). Nothing here touches a socket or an event loop, so every check can be tested by
feeding bytes, and both clients refuse exactly the same responses.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from ..exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from .deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    NegotiationError,
    PerMessageDeflate,
    accept_agreement,
    client_offer,
)
from .handshake import (
    ClientResponse,
    Headers,
    ResponseParser,
    check_response,
    client_request,
    generate_key,
    parse_extensions,
)

__all__ = [
    "ClientHandshake",
    "HeadersLike",
    "WebSocketURI",
    "compression_options",
    "header_list",
    "parse_uri",
]

#: What `headers=` accepts: a dict (or any mapping), fastws' Headers, or (name, value) pairs
#: (a list keeps repeated names, e.g. two Cookie fields).
HeadersLike = Mapping[str, str] | Headers | Iterable[tuple[str, str]]

# Characters left as they are in the resource name: RFC 3986's reserved and unreserved ones
# and "%" (already escaped input stays as it is). Everything else, non-ASCII, spaces and
# control characters included, is percent-encoded, so no URI can inject a header line.
_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"
# A host name, an IPv4 address, or an IPv6 address (a zone id after "%" included).
_is_host = re.compile(r"[A-Za-z0-9._~%:-]+").fullmatch
_bad_escape = re.compile(r"%(?![0-9A-Fa-f]{2})").search


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed ws:// or wss:// URI (RFC 6455 3)."""

    secure: bool
    host: str
    port: int
    resource_name: str  # path and query, what the request line asks for
    user_info: tuple[str, str] | None = None  # (user, password) for HTTP Basic auth

    @property
    def host_header(self) -> str:
        """The Host header: the port only when it is not the scheme's default (RFC 7230
        5.4), an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and check a WebSocket URI; InvalidURI (naming the URI and the fault) if it is
    not one the client can connect to."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken IPv6 literal
        raise InvalidURI(uri, str(exc)) from None
    # RFC 6455 3: ws-URI = "ws:" "//" host [ ":" port ] path [ "?" query ],
    # wss-URI = "wss:" ...
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    host = parts.hostname
    if not host:
        raise InvalidURI(uri, "hostname isn't provided")
    # RFC 6455 3: "Fragment identifiers are meaningless in the context of WebSocket URIs
    # and MUST NOT be used on these URIs."
    if parts.fragment or uri.endswith("#"):
        raise InvalidURI(uri, "fragment identifier is meaningless")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURI(uri, "hostname isn't a valid internationalized name") from None
    if not _is_host(host):
        raise InvalidURI(uri, f"invalid hostname {host!r}")
    if port == 0:
        raise InvalidURI(uri, "port 0")
    secure = parts.scheme == "wss"
    path = quote(parts.path or "/", safe=_SAFE)
    if not path.startswith("/"):
        path = "/" + path
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE)
    if _bad_escape(path):
        raise InvalidURI(uri, '"%" not followed by two hex digits in the path or query')
    user_info = None
    if parts.username is not None:
        if parts.password is None:
            raise InvalidURI(uri, "username provided without password")
        user_info = (unquote(parts.username), unquote(parts.password))
    return WebSocketURI(secure, host, port or (443 if secure else 80), path, user_info)


def header_list(headers: HeadersLike | None) -> list[tuple[str, str]]:
    """`headers=` as (name, value) pairs, whatever form it came in (see HeadersLike)."""
    if headers is None:
        return []
    items: Iterable[object]
    if isinstance(headers, Headers):
        items = headers.raw  # every field, repeated ones too (the mapping has one each)
    else:
        items = headers.items() if isinstance(headers, Mapping) else headers
    pairs = []
    for item in items:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
        ):
            raise TypeError(f"headers: expected (name, value) pairs of str, got {item!r}")
        pairs.append(item)
    return pairs


def compression_options(compression: str | DeflateOptions | None) -> DeflateOptions | None:
    """`compression=`: "deflate" or DeflateOptions offers permessage-deflate, None does not."""
    if compression == "deflate":
        return DeflateOptions()
    if compression is None or isinstance(compression, DeflateOptions):
        return compression
    raise ValueError(f"compression must be 'deflate', DeflateOptions or None: {compression!r}")


class ClientHandshake:
    """One opening handshake, client side: `request` to send, then `receive_data()` until it
    returns the response. Afterwards `subprotocol`, `deflate` (the agreed permessage-deflate
    or None) and `leftover` (frame bytes that came with the response) set up the connection.
    """

    __slots__ = (
        "_parser",
        "compression",
        "deflate",
        "key",
        "leftover",
        "request",
        "response",
        "subprotocol",
        "subprotocols",
        "uri",
    )

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        compression: DeflateOptions | None = None,
        key: str | None = None,
    ) -> None:
        self.uri = uri
        self.key = generate_key() if key is None else key
        self.subprotocols = tuple(subprotocols)
        self.compression = compression
        fields = header_list(headers)
        if uri.user_info is not None and not any(n.lower() == "authorization" for n, _ in fields):
            # RFC 7617 2: the user-id and password, joined by ":", base64-encoded.
            credentials = base64.b64encode(":".join(uri.user_info).encode()).decode("ascii")
            fields.append(("Authorization", f"Basic {credentials}"))
        offer = client_offer(compression) if compression is not None else None
        #: The upgrade request, ready to send.
        self.request: bytes = client_request(
            uri.host_header, uri.resource_name, self.key, self.subprotocols, offer, fields
        )
        self.response: ClientResponse | None = None
        self.subprotocol: str | None = None
        self.deflate: PerMessageDeflate | None = None
        self.leftover = b""
        self._parser: ResponseParser | None = ResponseParser()

    def receive_data(self, data: bytes | bytearray | memoryview) -> ClientResponse | None:
        """Feed the server's bytes: None while the response head is incomplete, the response
        once it is complete and accepted.

        Raises InvalidStatus when the server answers with anything but 101, InvalidHandshake
        when the answer breaks RFC 6455 4.1 or RFC 7692 (the client then fails the
        connection: closes TCP without a Close frame).
        """
        parser = self._parser
        if parser is None:
            raise RuntimeError("the opening handshake is already complete")
        response = parser.feed(data)
        if response is None:
            return None
        self._parser = None
        self.response = response
        self.leftover = bytes(parser.leftover)
        # RFC 6455 4.1: "If the status code received from the server is not 101, the client
        # handles the response per HTTP [RFC2616] procedures."
        if response.status != 101:
            raise InvalidStatus(response)
        offered = (EXTENSION_NAME,) if self.compression is not None else ()
        self.subprotocol = check_response(response, self.key, self.subprotocols, extensions=offered)
        if self.compression is not None:
            self.deflate = self._accept_compression(response, self.compression)
        return response

    def connection_lost(self, cause: BaseException | None = None) -> InvalidHandshake:
        """The error for a connection that ended before the response was complete; its
        __cause__ is `cause` or an EOFError (a retry may succeed: the server may restart)."""
        exc = InvalidHandshake("connection closed during the opening handshake", self.response)
        exc.__cause__ = cause if cause is not None else EOFError("no complete response")
        return exc

    @staticmethod
    def _accept_compression(
        response: ClientResponse, options: DeflateOptions
    ) -> PerMessageDeflate | None:
        values = response.headers.get_all("Sec-WebSocket-Extensions")
        try:
            agreement = accept_agreement(parse_extensions(values), options)
        except NegotiationError as exc:
            # RFC 7692 5: "A client MUST _Fail the WebSocket Connection_ if the peer server
            # accepted an extension negotiation offer for this extension with an extension
            # negotiation response meeting any of the following conditions" (see
            # accept_agreement).
            raise InvalidHandshake(
                f"invalid permessage-deflate response: {exc}", response
            ) from None
        if agreement is None:
            return None
        return PerMessageDeflate(agreement, options, client=True)
