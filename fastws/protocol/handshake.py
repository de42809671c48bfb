"""The HTTP/1.1 opening handshake of RFC 6455, sans I/O.

Parsers take bytes and return values; builders return bytes. Nothing here
touches sockets or event loops, so the server, the client and the tests share
one implementation, and it can be fed one byte at a time or fuzzed.

Server side::

    parser = RequestParser()
    request = parser.feed(data)  # None until the head is complete
    key = check_upgrade(request)  # HandshakeError -> send exc.response()
    wire = accept_response(key).serialize()
    # parser.leftover holds any frame bytes the client sent right after the head

Client side: ``client_request`` / ``ResponseParser`` / ``check_response``.
"""

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final, Generic, TypeVar, overload

from ..exceptions import HandshakeError, InvalidHandshake  # defined with the others

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
    "format_extension",
    "generate_key",
    "negotiate_subprotocol",
    "parse_extensions",
    "parse_header_list",
]

GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_GUID_BYTES: Final = GUID.encode("ascii")

# RFC 7230 3.2.6: tchar, the characters allowed in a token (header names, methods,
# extension names, subprotocols).
_TCHAR: Final = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_is_token = re.compile(f"[{_TCHAR}]+").fullmatch
# RFC 7230 3.2: header-field = field-name ":" OWS field-value OWS, where field-value
# is VCHAR / obs-text / SP / HTAB. Anchored at line starts and unable to cross a line
# end, the pattern matches once per valid line: one findall validates and splits the
# whole block, and a count of matches below the count of lines means a bad line.
# (No separate leading-OWS group: two adjacent quantifiers over overlapping classes
# would backtrack quadratically on a long line of blanks.)
_findall_header_lines = re.compile(
    f"^([{_TCHAR}]+):([\\t\\x20-\\x7e\\x80-\\xff]*)\\r?\\n", re.MULTILINE
).findall
_match_header_line = re.compile(f"([{_TCHAR}]+):([\\t\\x20-\\x7e\\x80-\\xff]*)").fullmatch
# Everything but HTAB in the C0 range, plus DEL: never valid in what we emit.
_find_ctl = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
# RFC 7230 3.5: "a recipient MAY recognize a single LF as a line terminator and
# ignore any preceding CR", so the head ends at LF, optional CR, LF.
_search_head_end = re.compile(rb"\n\r?\n").search
_is_target = re.compile(r"[\x21-\x22\x24-\x7e]+").fullmatch  # visible ASCII but "#"
_match_absolute = re.compile(r"(?:[hH][tT][tT][pP][sS]?|[wW][sS][sS]?)://[^/?]+(.*)").fullmatch
_is_http_version = re.compile(r"HTTP/[0-9]+(?:\.[0-9]+)?").fullmatch
_is_status_code = re.compile(r"[0-9]{3}").fullmatch
_TOKEN_BYTES: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789" + bytes(range(65, 91)) + bytes(range(97, 123))
)

# Pre-rendered status lines for the standard phrases: a response costs a dict lookup.
_PHRASES: Final = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: Final = {code: f"HTTP/1.1 {code} {phrase}\r\n" for code, phrase in _PHRASES.items()}
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


class Headers:
    """Ordered, case-insensitive multi-dict of header fields.

    Semantics follow ``multidict``: ``len`` counts fields, iteration yields each
    field's name (duplicates included), ``items()`` yields every pair in order;
    lookups ignore case and ``get``/``[]`` return the first value.
    """

    __slots__ = ("_index_", "raw")

    def __init__(self, raw: Iterable[tuple[str, str]] = ()) -> None:
        self.raw: list[tuple[str, str]] = list(raw)
        self._index_: dict[str, list[str]] | None = None

    @property
    def _index(self) -> dict[str, list[str]]:
        """Lowercased name -> values, built on first lookup (see `compact`)."""
        index = self._index_
        if index is None:
            index = self._index_ = {}
            for name, value in self.raw:
                key = name.lower()
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
        return index

    def compact(self) -> None:
        """Drop the lookup index (rebuilt if needed): an open connection keeps its request's
        headers for the application, and the index would double what they cost."""
        self._index_ = None

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    @overload
    def get(self, name: str, default: None) -> str | None: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name``, or ``default`` when absent."""
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; duplicates matter to the handshake."""
        return list(self._index.get(name.lower(), ()))

    def get_tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every ``name`` field, stripped and lowercased.

        For ``Connection``/``Upgrade``, whose values are case-insensitive lists
        (``Connection: keep-alive, Upgrade``), possibly split over several fields.
        """
        values = self._index.get(name.lower())
        if not values:
            return []
        return [t for v in values for t in (p.strip(" \t").lower() for p in v.split(",")) if t]

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair in order, names in their original case."""
        return list(self.raw)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self.raw] == [(n.lower(), v) for n, v in other.raw]

    __hash__ = None  # type: ignore[assignment]  # mutable contents, equality by value

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head. ``path``/``query`` split ``target`` at the first '?'."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    @property
    def origin(self) -> str | None:
        return self.headers.get("Origin")

    @property
    def key(self) -> str | None:
        return self.headers.get("Sec-WebSocket-Key")


@dataclass(slots=True)
class Response:
    """An HTTP response head (and optional body) to send instead of, or as, the upgrade."""

    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = _PHRASES.get(self.status, "")

    def serialize(self) -> bytes:
        """Render the response; raises ValueError rather than emit a forged header."""
        status, reason, headers, body = self.status, self.reason, self.headers, self.body
        if status == 101 and headers[:2] == _ACCEPT_HEADERS and reason == "Switching Protocols":
            # The common path: reuse the pre-rendered prefix of every accept response.
            if body:
                raise ValueError("a 101 response cannot have a body")
            parts = []
            for name, value in headers[2:]:
                _check_field(name, value)
                parts.append(f"{name}: {value}\r\n")
            parts.append("\r\n")
            return _ACCEPT_PREFIX + "".join(parts).encode("latin-1")

        if type(status) is not int or not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status!r}")
        if _PHRASES.get(status) == reason:
            parts = [_STATUS_LINES[status]]
        elif _find_ctl(reason):
            raise ValueError("header injection: control character in reason phrase")
        else:
            parts = [f"HTTP/1.1 {status} {reason}\r\n"]
        has_connection = has_length = False
        for name, value in headers:
            _check_field(name, value)
            lname = name.lower()
            if lname == "connection":
                has_connection = True
            elif lname == "content-length":
                if value != str(len(body)):
                    raise ValueError("Content-Length header does not match the body")
                has_length = True
            parts.append(f"{name}: {value}\r\n")
        # RFC 7230 3.3.2: "A server MUST NOT send a Content-Length header field in any
        # response with a status code of 1xx (Informational) or 204 (No Content)."
        if status < 200 or status == 204 or status == 304:
            if body:
                raise ValueError(f"a {status} response cannot have a body")
        elif not has_length:
            parts.append(f"Content-Length: {len(body)}\r\n")
        if status != 101 and not has_connection:
            # Any response but the upgrade ends the connection: say so.
            parts.append("Connection: close\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("latin-1") + body


def _check_field(name: str, value: str) -> None:
    """Refuse a header that would be malformed or could smuggle in another line."""
    if not _is_token(name):
        raise ValueError(f"header injection: invalid header name {name!r}")
    if _find_ctl(value):
        raise ValueError(f"header injection: control character in value of {name}")


@dataclass(frozen=True, slots=True)
class ClientResponse:
    """A parsed response head, as seen by the client."""

    status: int
    reason: str
    headers: Headers
    version: str = "HTTP/1.1"


# ---------------------------------------------------------------------------
# Incremental head parsing

_S = TypeVar("_S")  # parsed start line
_T = TypeVar("_T")  # parsed head


class _HeadParser(Generic[_S, _T]):
    """Buffers one HTTP/1.1 head and parses it once complete.

    Searches resume where the previous feed stopped, so byte-at-a-time input
    costs O(n) overall; limits are enforced on the buffered bytes before the
    head completes, so an endless header line is refused at the limit.
    After an error, discard the parser.
    """

    __slots__ = (
        "_buf",
        "_done",
        "_headers_start",
        "_max_headers",
        "_max_line",
        "_max_size",
        "_scan",
        "_start",
        "leftover",
    )
    _start: _S  # set once the start line is complete

    def __init__(self, max_line: int, max_headers: int, max_size: int) -> None:
        self._max_line = max_line
        self._max_headers = max_headers
        self._max_size = max_size
        self._buf = bytearray()
        self._scan = 0  # where the next search for a line end may begin
        self._headers_start = -1  # index just past the start line, once seen
        self._done = False
        self.leftover = b""  # bytes after the head (e.g. the first frames)

    def feed(self, data: bytes | bytearray | memoryview) -> _T | None:
        """Add bytes; return the parsed head once complete, else None."""
        if self._done:
            raise RuntimeError("the head is already complete; read .leftover")
        buf = self._buf
        buf += data

        if self._headers_start < 0:
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                self._check_partial_start(buf)
                line_len = len(buf) - (buf[-1:] == b"\r")
                if line_len > self._max_line:
                    raise self._start_line_too_long()
                if len(buf) > self._max_size:
                    raise self._head_too_large()
                self._scan = len(buf)
                return None
            line_len = nl - (nl > 0 and buf[nl - 1] == 13)
            if line_len > self._max_line:
                raise self._start_line_too_long()
            # Validate the start line now: a bad method or version is refused
            # without waiting for (or buffering) the headers.
            self._start = self._parse_start_line(bytes(buf[:line_len]))
            self._headers_start = nl + 1
            self._scan = nl

        match = _search_head_end(buf, self._scan)
        if match is None:
            if len(buf) > self._max_size:
                raise self._head_too_large()
            self._scan = max(self._scan, len(buf) - 2)
            return None
        end = match.end()
        if end > self._max_size:
            raise self._head_too_large()

        # Header lines, each with its line end ("\n" or "\r\n").
        text = buf[self._headers_start : match.start() + 1].decode("latin-1")
        count = text.count("\n")
        if count > self._max_headers:
            raise self._too_many_headers()
        pairs = _findall_header_lines(text)
        if len(pairs) != count:
            raise self._error(400, _header_block_error(text))
        raw = [(name, value.strip(" \t")) for name, value in pairs]

        self.leftover = bytes(buf[end:])
        self._buf = bytearray()
        self._done = True
        return self._build(self._start, Headers(raw))

    # Hooks for the request and response flavours.
    def _check_partial_start(self, buf: bytearray) -> None:
        pass

    def _parse_start_line(self, line: bytes) -> _S:
        raise NotImplementedError

    def _build(self, start: _S, headers: Headers) -> _T:
        raise NotImplementedError

    def _error(self, status: int, reason: str) -> Exception:
        raise NotImplementedError

    def _start_line_too_long(self) -> Exception:
        raise NotImplementedError

    def _head_too_large(self) -> Exception:
        return self._error(431, "header section too large")

    def _too_many_headers(self) -> Exception:
        return self._error(431, "too many header fields")


def _header_block_error(text: str) -> str:
    """Name what is wrong with the first bad header line (only computed on failure)."""
    for line in text.split("\n")[:-1]:
        if line[-1:] == "\r":
            line = line[:-1]
        if _match_header_line(line) is None:
            return _header_line_error(line)
    return "malformed header line"  # pragma: no cover - findall and fullmatch agree


def _header_line_error(line: str) -> str:
    if line[:1] in (" ", "\t"):
        # RFC 7230 3.2.4: "A server that receives an obs-fold in a request message
        # ... MUST either reject the message by sending a 400 (Bad Request)".
        return "folded header lines are not supported"
    name, colon, _ = line.partition(":")
    if not colon:
        return "malformed header line"
    if name != name.rstrip(" \t"):
        # RFC 7230 3.2.4: "A server MUST reject any received request message that
        # contains whitespace between a header field-name and colon with a response
        # code of 400 (Bad Request)".
        return "whitespace before colon in header line"
    if not _is_token(name):
        return "invalid header name"
    return "invalid character in header value"


class RequestParser(_HeadParser[tuple[str, str, str, str], Request]):
    """Incremental parser for the client's opening handshake (one request head)."""

    __slots__ = ()

    def __init__(
        self, max_request_line: int = 8192, max_headers: int = 128, max_header_size: int = 16384
    ) -> None:
        super().__init__(max_request_line, max_headers, max_header_size)

    def _error(self, status: int, reason: str) -> HandshakeError:
        return HandshakeError(status, reason)

    def _start_line_too_long(self) -> HandshakeError:
        # RFC 7230 3.1.1: "A server that receives a request-target longer than any URI
        # it wishes to parse MUST respond with a 414 (URI Too Long) status code".
        return HandshakeError(414, "request line too long")

    def _check_partial_start(self, buf: bytearray) -> None:
        # A method is a token: refuse TLS or binary garbage on its first byte
        # rather than wait for a line end that may never come.
        if buf and buf[0] not in _TOKEN_BYTES:
            raise HandshakeError(400, "malformed request line")

    def _parse_start_line(self, line: bytes) -> tuple[str, str, str, str]:
        if not line.isascii():
            raise HandshakeError(400, "malformed request line")
        parts = line.decode("ascii").split(" ")
        if len(parts) != 3:
            raise HandshakeError(400, "malformed request line")
        method, target, version = parts
        if version != "HTTP/1.1":
            if not _is_token(method) or not _is_http_version(version):
                raise HandshakeError(400, "malformed request line")
            # RFC 6455 4.2.1: "An HTTP/1.1 or higher GET request". Later versions do
            # not use this upgrade mechanism, so only HTTP/1.1 is accepted.
            raise HandshakeError(400, "HTTP/1.1 required")
        if method != "GET":
            if not _is_token(method):
                raise HandshakeError(400, "malformed request line")
            raise HandshakeError(405, "only GET can open a WebSocket", [("Allow", "GET")])
        if not _is_target(target):
            raise HandshakeError(400, "malformed request target")
        if target[0] != "/":
            # RFC 6455 4.2.1: a "Request-URI" that is a /resource name/ "(or an
            # absolute HTTP/HTTPS URI containing the /resource name/)".
            m = _match_absolute(target)
            if m is None:
                raise HandshakeError(400, "malformed request target")
            rest = m.group(1)
            resource = rest if rest[:1] == "/" else "/" + rest
        else:
            resource = target
        path, _, query = resource.partition("?")
        return method, target, path, query

    def _build(self, start: tuple[str, str, str, str], headers: Headers) -> Request:
        method, target, path, query = start
        return Request(method, target, path, query, "HTTP/1.1", headers)


class ResponseParser(_HeadParser[tuple[int, str], ClientResponse]):
    """Incremental parser for the server's response head; a body stays in ``leftover``."""

    __slots__ = ()

    def __init__(
        self, max_status_line: int = 8192, max_headers: int = 128, max_header_size: int = 16384
    ) -> None:
        super().__init__(max_status_line, max_headers, max_header_size)

    def _error(self, status: int, reason: str) -> InvalidHandshake:
        return InvalidHandshake(f"invalid response from server: {reason}")

    def _start_line_too_long(self) -> InvalidHandshake:
        return InvalidHandshake("invalid response from server: status line too long")

    def _check_partial_start(self, buf: bytearray) -> None:
        if not b"HTTP/".startswith(buf[:5]):
            raise InvalidHandshake("invalid response from server: not HTTP")

    def _parse_start_line(self, line: bytes) -> tuple[int, str]:
        text = line.decode("latin-1")
        version, _, rest = text.partition(" ")
        code, sep, reason = rest[:3], rest[3:4], rest[4:]
        if not _is_status_code(code) or sep not in ("", " ") or _find_ctl(reason):
            raise InvalidHandshake(f"invalid response from server: malformed status line {text!r}")
        if version != "HTTP/1.1":
            raise InvalidHandshake(f"invalid response from server: unsupported version {version!r}")
        return int(code), reason

    def _build(self, start: tuple[int, str], headers: Headers) -> ClientResponse:
        status, reason = start
        return ClientResponse(status, reason, headers)


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
        if not _is_token(subprotocol):
            raise ValueError(f"invalid subprotocol {subprotocol!r}")
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    for name, value in headers:
        if name.lower() in _ACCEPT_RESERVED:
            raise ValueError(f"{name} is set by accept_response itself")
        fields.append((name, value))
    return Response(101, "Switching Protocols", fields)


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
_TOKEN = f"[{_TCHAR}]+"
_PARAM = f'{_OWS}{_TOKEN}{_OWS}(?:={_OWS}(?:{_TOKEN}|"(?:[{_TCHAR}]|\\\\[{_TCHAR}])+"){_OWS})?'
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
        if arg is not None and not _is_token(arg):
            raise ValueError(f"invalid value {arg!r} for extension parameter {param!r}")
    for token in (name, *(param for param, _ in params)):
        if not _is_token(token):
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
    if not path.startswith("/") or not _is_target(path):
        raise ValueError(f"invalid resource name {path!r}")
    # RFC 6455 4.1: "The request MUST contain a |Host| header field".
    if not host_header or not host_header.isascii() or _find_ctl(host_header) or " " in host_header:
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
        if len(set(subprotocols)) != len(subprotocols) or not all(map(_is_token, subprotocols)):
            raise ValueError(f"invalid subprotocols {list(subprotocols)!r}")
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    if extensions:
        if not _is_extension_list(extensions):
            raise ValueError(f"invalid Sec-WebSocket-Extensions value {extensions!r}")
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    for name, value in headers:
        if name.lower() in _REQUEST_RESERVED:
            raise ValueError(f"{name} is set by client_request itself")
        _check_field(name, value)
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
    if len(protocols) != 1 or not _is_token(protocols[0]):
        raise fail(f"server must choose one subprotocol, got {protocols!r}")
    if protocols[0] not in subprotocols:
        raise fail(f"server chose subprotocol {protocols[0]!r} that was not offered")
    return protocols[0]
