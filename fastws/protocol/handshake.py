"""The opening handshake of RFC 6455, sans I/O: the WebSocket half.

The HTTP/1.1 half (parsing heads, `Headers`, serializing responses) is `http11`; this
module says what makes a request an upgrade, computes the accept key, negotiates
subprotocols and extensions, and builds the client's request. Parsers take bytes and
return values; builders return bytes. Nothing here touches sockets or event loops, so
the server, the client and the tests share one implementation.

Server side::

    parser = RequestParser()
    request = parser.feed(data)  # None until the head is complete
    key = check_upgrade(request)  # HandshakeError -> send error_response(exc)
    wire = accept_response(key).serialize()
    # parser.leftover holds any frame bytes the client sent right after the head

Client side: ``client_request`` / ``ResponseParser`` / ``check_response``.

The HTTP names (`Headers`, `Request`, `Response`, `RequestParser`, `ClientResponse`) are
re-exported here for the modules that import them from this one.
"""

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Final

from ..exceptions import HandshakeError, InvalidHandshake  # defined with the others
from .http11 import (
    TCHAR,
    ClientResponse,
    Headers,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    check_field,
    error_response,
    find_ctl,
    is_target,
    is_token,
)

__all__ = [
    "GUID",
    "ClientResponse",
    "HandshakeError",
    "Headers",
    "InvalidHandshake",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "accept_key",
    "accept_response",
    "check_origin",
    "check_response",
    "check_upgrade",
    "client_request",
    "error_response",
    "format_extension",
    "generate_key",
    "negotiate_subprotocol",
    "parse_extensions",
    "parse_header_list",
]

GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_GUID_BYTES: Final = GUID.encode("ascii")

# The constant part of every 101: serialize() reuses it instead of re-validating.
_ACCEPT_HEADERS: Final = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
_ACCEPT_PREFIX: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
)
# Fields the builders set themselves; a duplicate from the caller would corrupt the handshake.
_ACCEPT_RESERVED: Final = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
    }
)
_REQUEST_RESERVED: Final = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)


class _AcceptResponse(Response):
    """A 101 whose first fields are the constant upgrade ones: rendered from a prefix."""

    __slots__ = ()

    def serialize(self) -> bytes:
        headers = self.headers
        if (
            headers[:2] != _ACCEPT_HEADERS
            or self.body
            or self.status != 101
            or self.reason != "Switching Protocols"
        ):
            return Response.serialize(self)  # changed by the caller: the general path
        parts = []
        for name, value in headers[2:]:
            check_field(name, value)
            parts.append(f"{name}: {value}\r\n")
        parts.append("\r\n")
        return _ACCEPT_PREFIX + "".join(parts).encode("latin-1")


# ---------------------------------------------------------------------------
# Server side


# Exactly the strings b64decode(key, validate=True) turns into 16 bytes: 16 bytes
# take 22 base64 characters plus "==" padding. Cheaper than decoding.
_is_valid_key = re.compile(r"[A-Za-z0-9+/]{22}==").fullmatch


def check_upgrade(request: Request) -> str:
    """Validate the client's opening handshake; return its Sec-WebSocket-Key.

    Raises HandshakeError carrying the status to answer with. Origin,
    subprotocols and the resource name are the caller's policy, not checked here.
    """
    headers = request.headers
    # RFC 6455 4.2.1: "An |Upgrade| header field containing the value "websocket",
    # treated as an ASCII case-insensitive value."
    if "websocket" not in headers.get_tokens("Upgrade"):
        raise HandshakeError(400, "missing Upgrade: websocket")
    # RFC 6455 4.2.1: "A |Connection| header field that includes the token
    # "Upgrade", treated as an ASCII case-insensitive value."
    if "upgrade" not in headers.get_tokens("Connection"):
        raise HandshakeError(400, "missing Connection: Upgrade")
    # RFC 6455 4.2.1: "A |Host| header field containing the server's authority."
    # RFC 7230 5.4: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that lacks a Host header field and to any request
    # message that contains more than one Host header field".
    hosts = headers.get_all("Host")
    if len(hosts) != 1:
        raise HandshakeError(400, "missing Host header" if not hosts else "duplicate Host header")
    # RFC 6455 4.2.1: "A |Sec-WebSocket-Version| header field, with a value of 13."
    versions = headers.get_all("Sec-WebSocket-Version")
    if len(versions) > 1:
        raise HandshakeError(400, "duplicate Sec-WebSocket-Version header")
    if not versions or versions[0] != "13":
        # RFC 6455 4.2.2: "If this version does not match a version understood by the
        # server, the server MUST abort the WebSocket handshake ... and instead send an
        # appropriate HTTP error code (such as 426 Upgrade Required) and a
        # |Sec-WebSocket-Version| header field indicating the version(s) the server is
        # capable of understanding." RFC 7231 6.5.15: "The server MUST send an Upgrade
        # header field in a 426 response to indicate the required protocol(s)".
        raise HandshakeError(
            426,
            "unsupported WebSocket version, 13 required",
            [
                ("Sec-WebSocket-Version", "13"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade, close"),
            ],
        )
    # RFC 6455 4.2.1: "A |Sec-WebSocket-Key| header field with a base64-encoded (see
    # Section 4 of [RFC4648]) value that, when decoded, is 16 bytes in length."
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise HandshakeError(
            400, "missing Sec-WebSocket-Key header" if not keys else "duplicate Sec-WebSocket-Key"
        )
    key = keys[0]
    if not _is_valid_key(key):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    # RFC 6455 9.1: "If a value is received by either the client or the server during
    # negotiation that does not conform to the ABNF below, the recipient of such
    # malformed data MUST immediately _Fail the WebSocket Connection_."
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        if not _is_extension_list(value):
            raise _bad_extensions()
    return key


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for ``key``: proves the server read this handshake.

    RFC 6455 4.2.2: "constructed by concatenating /key/ ... with the string
    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", taking the SHA-1 hash of this
    concatenated value ... and base64-encoding ... this 20-byte hash."
    """
    digest = hashlib.sha1(key.encode("latin-1") + _GUID_BYTES, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def accept_response(
    key: str,
    subprotocol: str | None = None,
    extensions: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """The 101 Switching Protocols response that completes the handshake.

    ``extensions`` is the already-formatted Sec-WebSocket-Extensions value;
    ``headers`` are extra fields (e.g. Server, Set-Cookie).
    """
    # RFC 6455 4.2.2: "A Status-Line with a 101 response code", "An |Upgrade| header
    # field with value "websocket"", "A |Connection| header field with value
    # "Upgrade"" and "A |Sec-WebSocket-Accept| header field".
    fields = [*_ACCEPT_HEADERS, ("Sec-WebSocket-Accept", accept_key(key))]
    if subprotocol is not None:
        # RFC 6455 4.2.2: "The empty string is not the same as the null value for
        # these purposes and is not a legal value for this field. The ABNF for the
        # value of this header field is (token)".
        if not is_token(subprotocol):
            raise ValueError(f"invalid subprotocol {subprotocol!r}")
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    for name, value in headers:
        if name.lower() in _ACCEPT_RESERVED:
            raise ValueError(f"{name} is set by accept_response itself")
        fields.append((name, value))
    return _AcceptResponse(101, "Switching Protocols", fields)


def parse_header_list(values: list[str]) -> list[str]:
    """Comma-separated items of every field, stripped, case preserved, empties dropped.

    RFC 7230 7: a recipient "MUST parse and ignore a reasonable number of empty
    list elements".
    """
    return [item for v in values for item in (p.strip(" \t") for p in v.split(",")) if item]


def negotiate_subprotocol(request: Request, supported: Sequence[str]) -> str | None:
    """The first of the server's ``supported`` subprotocols the client offered.

    The server's order wins so that the application, not the client, decides
    which protocol is preferred. None when nothing matches (send no header).
    """
    values = request.headers.get_all("Sec-WebSocket-Protocol")
    if not values or not supported:
        return None
    offered = set(parse_header_list(values))
    for protocol in supported:
        if protocol in offered:
            return protocol
    return None


def check_origin(request: Request, origins: Sequence[str] | None) -> None:
    """Refuse a browser page from an origin not in ``origins`` (None: allow all).

    Origins compare case-insensitively (scheme and host are). Requests without
    Origin come from non-browser clients; they are refused when an allow-list is
    set unless it contains the empty string "".
    """
    if origins is None:
        return
    values = request.headers.get_all("Origin")
    if len(values) > 1:
        raise HandshakeError(400, "duplicate Origin header")
    origin = values[0].lower() if values else ""
    for allowed in origins:
        if allowed.lower() == origin:
            return
    # RFC 6455 4.2.2: "If the server does not wish to accept this connection, it MUST
    # return an appropriate HTTP error code (e.g., 403 Forbidden) and abort the
    # WebSocket handshake".
    raise HandshakeError(403, "origin not allowed")


# ---------------------------------------------------------------------------
# Extensions (RFC 6455 9.1)

# RFC 6455 9.1 (with the implied *LWS rule of RFC 2616, i.e. OWS around separators):
#     extension-list = 1#extension
#     extension = extension-token *( ";" extension-param )
#     extension-param = token [ "=" (token | quoted-string) ]
# "When using the quoted-string syntax variant, the value after quoted-string
# unescaping MUST conform to the 'token' ABNF": a quoted value holds only tchars,
# possibly backslash-escaped. Empty list elements are allowed (RFC 7230 7).
_OWS = r"[ \t]*"
_TOKEN = f"[{TCHAR}]+"
_PARAM = f'{_OWS}{_TOKEN}{_OWS}(?:={_OWS}(?:{_TOKEN}|"(?:[{TCHAR}]|\\\\[{TCHAR}])+"){_OWS})?'
_ELEMENT = f"(?:{_OWS}{_TOKEN}{_OWS}(?:;{_PARAM})*|{_OWS})"
_is_extension_list = re.compile(f"{_ELEMENT}(?:,{_ELEMENT})*").fullmatch
_unescape = re.compile(r"\\(.)").sub

_ExtensionParams = list[tuple[str, str | None]]


def parse_extensions(values: list[str]) -> list[tuple[str, _ExtensionParams]]:
    """Parse Sec-WebSocket-Extensions fields into [(name, [(param, value), ...])].

    Names and parameter names are lowercased; parameters stay a list in order
    so that duplicates remain visible (RFC 7692 requires refusing them). Quoted
    values are unquoted. Raises HandshakeError(400) outside the 9.1 grammar.
    """
    result: list[tuple[str, _ExtensionParams]] = []
    for value in values:
        if not _is_extension_list(value):
            raise _bad_extensions()
        # Validated: "," ";" "=" and '"' now only occur as separators and quotes.
        for element in value.split(","):
            name, *items = element.split(";")
            name = name.strip(" \t").lower()
            if not name:
                continue  # empty list element
            params: _ExtensionParams = []
            for item in items:
                param, eq, arg = item.partition("=")
                param = param.strip(" \t").lower()
                if not eq:
                    params.append((param, None))
                    continue
                arg = arg.strip(" \t")
                if arg[0] == '"':
                    arg = _unescape(r"\1", arg[1:-1])
                params.append((param, arg))
            result.append((name, params))
    return result


def _bad_extensions() -> HandshakeError:
    return HandshakeError(400, "invalid Sec-WebSocket-Extensions header")


def format_extension(name: str, params: Sequence[tuple[str, str | None]] = ()) -> str:
    """Render one extension for a Sec-WebSocket-Extensions value: ``name; p; q=v``."""
    items = [name]
    for param, arg in params:
        items.append(param if arg is None else f"{param}={arg}")
        if arg is not None and not is_token(arg):
            raise ValueError(f"invalid value {arg!r} for extension parameter {param!r}")
    for token in (name, *(param for param, _ in params)):
        if not is_token(token):
            raise ValueError(f"invalid extension token {token!r}")
    return "; ".join(items)


# ---------------------------------------------------------------------------
# Client side


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key.

    RFC 6455 4.1: "The value of this header field MUST be a nonce consisting of a
    randomly selected 16-byte value that has been base64-encoded ... The nonce
    MUST be selected randomly for each connection."
    """
    return base64.b64encode(os.urandom(16)).decode("ascii")


def client_request(
    host_header: str,
    path: str,
    key: str,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The client's opening handshake. ``path`` is the resource name, query included."""
    # RFC 6455 4.1: "The method of the request MUST be GET, and the HTTP version MUST
    # be at least 1.1." and the "Request-URI" "MUST match the /resource name/".
    if not path.startswith("/") or not is_target(path):
        raise ValueError(f"invalid resource name {path!r}")
    # RFC 6455 4.1: "The request MUST contain a |Host| header field".
    if not host_header or not host_header.isascii() or find_ctl(host_header) or " " in host_header:
        raise ValueError(f"invalid Host header {host_header!r}")
    # RFC 6455 4.1: "The value of this header field MUST be a nonce consisting of a
    # randomly selected 16-byte value that has been base64-encoded".
    if not _is_valid_key(key):
        raise ValueError(f"invalid Sec-WebSocket-Key {key!r}")
    # RFC 6455 4.1: "The request MUST contain an |Upgrade| header field whose value
    # MUST include the "websocket" keyword", "a |Connection| header field whose value
    # MUST include the "Upgrade" token" and "|Sec-WebSocket-Version|. The value of
    # this header field MUST be 13."
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        # RFC 6455 4.1: "The elements that comprise this value MUST be non-empty
        # strings with characters in the range U+0021 to U+007E not including
        # separator characters as defined in [RFC2616] and MUST all be unique strings."
        if len(set(subprotocols)) != len(subprotocols) or not all(map(is_token, subprotocols)):
            raise ValueError(f"invalid subprotocols {list(subprotocols)!r}")
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    if extensions:
        if not _is_extension_list(extensions):
            raise ValueError(f"invalid Sec-WebSocket-Extensions value {extensions!r}")
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    for name, value in headers:
        if name.lower() in _REQUEST_RESERVED:
            raise ValueError(f"{name} is set by client_request itself")
        check_field(name, value)
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def check_response(
    response: ClientResponse,
    key: str,
    subprotocols: Sequence[str],
    *,
    extensions: Sequence[str] = (),
) -> str | None:
    """Validate the server's answer to our handshake; return the agreed subprotocol.

    ``extensions`` names the extensions the client offered (none by default).
    Raises InvalidHandshake, whose message says what the server got wrong.
    """

    def fail(message: str) -> InvalidHandshake:
        return InvalidHandshake(message, response)

    headers = response.headers
    # RFC 6455 4.1: "If the status code received from the server is not 101, the
    # client handles the response per HTTP [RFC2616] procedures."
    if response.status != 101:
        reason = f" {response.reason}" if response.reason else ""
        raise fail(f"server rejected WebSocket connection: HTTP {response.status}{reason}")
    # RFC 6455 4.1: "If the response lacks an |Upgrade| header field or the |Upgrade|
    # header field contains a value that is not an ASCII case-insensitive match for
    # the value "websocket", the client MUST _Fail the WebSocket Connection_."
    if headers.get_tokens("Upgrade") != ["websocket"]:
        raise fail(f"invalid Upgrade header in response: {headers.get_all('Upgrade')!r}")
    # RFC 6455 4.1: "If the response lacks a |Connection| header field or the
    # |Connection| header field doesn't contain a token that is an ASCII
    # case-insensitive match for the value "Upgrade", the client MUST _Fail the
    # WebSocket Connection_."
    if "upgrade" not in headers.get_tokens("Connection"):
        raise fail(f"invalid Connection header in response: {headers.get_all('Connection')!r}")
    # RFC 6455 4.1: "If the response lacks a |Sec-WebSocket-Accept| header field or
    # the |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1
    # of the concatenation of the |Sec-WebSocket-Key| (as a string, not
    # base64-decoded) with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" but
    # ignoring any leading and trailing whitespace, the client MUST _Fail the
    # WebSocket Connection_." (The parser already stripped the whitespace.)
    accepts = headers.get_all("Sec-WebSocket-Accept")
    if not accepts:
        raise fail("missing Sec-WebSocket-Accept header in response")
    if len(accepts) != 1 or accepts[0] != accept_key(key):
        raise fail(f"Sec-WebSocket-Accept mismatch: got {accepts!r}")
    # RFC 6455 4.1: "If the response includes a |Sec-WebSocket-Extensions| header
    # field and this header field indicates the use of an extension that was not
    # present in the client's handshake ..., the client MUST _Fail the WebSocket
    # Connection_."
    ext_values = headers.get_all("Sec-WebSocket-Extensions")
    if ext_values:
        try:
            accepted = parse_extensions(ext_values)
        except HandshakeError:
            raise fail(f"invalid Sec-WebSocket-Extensions in response: {ext_values!r}") from None
        offered = {name.lower() for name in extensions}
        for name, _ in accepted:
            if name not in offered:
                raise fail(f"server accepted extension {name!r} that was not offered")
    # RFC 6455 4.1: "If the response includes a |Sec-WebSocket-Protocol| header field
    # and this header field indicates the use of a subprotocol that was not present in
    # the client's handshake ..., the client MUST _Fail the WebSocket Connection_."
    protocols = headers.get_all("Sec-WebSocket-Protocol")
    if not protocols:
        return None
    # RFC 6455 4.3: Sec-WebSocket-Protocol-Server = token (exactly one).
    if len(protocols) != 1 or not is_token(protocols[0]):
        raise fail(f"server must choose one subprotocol, got {protocols!r}")
    if protocols[0] not in subprotocols:
        raise fail(f"server chose subprotocol {protocols[0]!r} that was not offered")
    return protocols[0]
