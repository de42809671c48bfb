"""HTTP/1.1 message heads, sans I/O: the half of the opening handshake that is plain HTTP.

Parsing a request or response head incrementally (with limits enforced as the bytes
arrive), the case-insensitive `Headers` mapping, and serializing a `Response` without
letting a caller forge header lines. RFC 6455 sits on top, in `handshake`: which
headers an upgrade needs, the accept key, subprotocols and extensions. Nothing here
touches sockets or event loops.

    parser = RequestParser()
    request = parser.feed(data)  # None until the head is complete; HandshakeError if malformed
    # parser.leftover holds any bytes the client sent right after the head
"""

import re
from collections.abc import Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final, Generic, Self, TypeVar, overload

from ..exceptions import HandshakeError, InvalidHandshake

__all__ = [
    "ClientResponse",
    "Headers",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "check_field",
    "error_response",
    "find_ctl",
    "is_target",
    "is_token",
]

# RFC 7230 3.2.6: tchar, the characters allowed in a token (header names, methods,
# extension names, subprotocols).
TCHAR: Final = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
is_token = re.compile(f"[{TCHAR}]+").fullmatch
# RFC 7230 3.2: header-field = field-name ":" OWS field-value OWS, where field-value
# is VCHAR / obs-text / SP / HTAB. Anchored at line starts and unable to cross a line
# end, the pattern matches once per valid line: one findall validates and splits the
# whole block, and a count of matches below the count of lines means a bad line.
# (No separate leading-OWS group: two adjacent quantifiers over overlapping classes
# would backtrack quadratically on a long line of blanks.)
_findall_header_lines = re.compile(
    f"^([{TCHAR}]+):([\\t\\x20-\\x7e\\x80-\\xff]*)\\r?\\n", re.MULTILINE
).findall
_match_header_line = re.compile(f"([{TCHAR}]+):([\\t\\x20-\\x7e\\x80-\\xff]*)").fullmatch
# Everything but HTAB in the C0 range, plus DEL: never valid in what we emit.
find_ctl = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
# RFC 7230 3.5: "a recipient MAY recognize a single LF as a line terminator and
# ignore any preceding CR", so the head ends at LF, optional CR, LF.
_search_head_end = re.compile(rb"\n\r?\n").search
is_target = re.compile(r"[\x21-\x22\x24-\x7e]+").fullmatch  # visible ASCII but "#"
_match_absolute = re.compile(r"(?:[hH][tT][tT][pP][sS]?|[wW][sS][sS]?)://[^/?]+(.*)").fullmatch
_is_http_version = re.compile(r"HTTP/[0-9]+(?:\.[0-9]+)?").fullmatch
_is_status_code = re.compile(r"[0-9]{3}").fullmatch
_TOKEN_BYTES: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789" + bytes(range(65, 91)) + bytes(range(97, 123))
)

# Pre-rendered status lines for the standard phrases: a response costs a dict lookup.
PHRASES: Final = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: Final = {code: f"HTTP/1.1 {code} {phrase}\r\n" for code, phrase in PHRASES.items()}


_D = TypeVar("_D")


class Headers(Mapping[str, str]):
    """The header fields of a request or response: a read-only, case-insensitive mapping.

    As a mapping (``dict(headers)``, ``headers["host"]``, ``in``, ``len``, ``keys()``,
    ``items()``), each field name counts once, lowercased, with the value of its first
    field. A repeated field is not lost: ``get_all(name)`` has every value in order and
    ``raw`` every (name, value) pair as received, names in their original case.
    Read-only because it is what the peer sent: a handler must not be able to change
    what the next reader of ``ws.request`` sees.
    """

    __slots__ = ("_index_", "_raw", "_text")

    def __init__(self, raw: Iterable[tuple[str, str]] = ()) -> None:
        self._raw: list[tuple[str, str]] | None = list(raw)
        # The header section as received (parsed requests): after `compact` the fields are
        # kept as this one string and parsed again when asked for.
        self._text: str | None = None
        self._index_: dict[str, list[str]] | None = None

    @classmethod
    def parsed(cls, text: str, raw: list[tuple[str, str]]) -> Self:
        """The fields `raw` that the header section `text` (lines with their line ends) was
        parsed into; `compact` can then keep the text alone."""
        headers = cls(())
        headers._raw = raw
        headers._text = text
        return headers

    @property
    def raw(self) -> list[tuple[str, str]]:
        """Every (name, value) pair as received, in order, names in their original case."""
        raw = self._raw
        if raw is None:  # compacted: parse the kept header section again (not kept either)
            assert self._text is not None
            return _fields(self._text)
        return raw

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
        """Keep the least memory: an open connection keeps its request's headers for the
        application, who rarely reads them after the handshake. The lookup index is dropped
        (rebuilt on the next lookup) and parsed headers keep only the header section as one
        string (~0.2 KB for a client's usual fields instead of ~1 KB of tuples and strings)."""
        self._index_ = None
        if self._text is not None:
            self._raw = None

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _D, /) -> str | _D: ...
    def get(self, name: str, default: object = None, /) -> object:
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

    def keys(self) -> KeysView[str]:
        """The distinct field names, lowercased, in the order they first appear."""
        return self._index.keys()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

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
            self.reason = PHRASES.get(self.status, "")

    def serialize(self) -> bytes:
        """Render the response; raises ValueError rather than emit a forged header."""
        status, reason, headers, body = self.status, self.reason, self.headers, self.body
        if type(status) is not int or not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status!r}")
        if PHRASES.get(status) == reason:
            parts = [_STATUS_LINES[status]]
        elif find_ctl(reason):
            raise ValueError("header injection: control character in reason phrase")
        else:
            parts = [f"HTTP/1.1 {status} {reason}\r\n"]
        has_connection = has_length = False
        for name, value in headers:
            check_field(name, value)
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


def error_response(error: HandshakeError) -> Response:
    """The plain-text answer to a refused handshake, sent before closing the connection:
    the error's status, its extra headers, and its reason as the body."""
    return Response(
        error.status,
        headers=[("Content-Type", "text/plain; charset=utf-8"), *error.headers],
        body=(error.reason + "\n").encode(),
    )


def check_field(name: str, value: str) -> None:
    """Refuse a header that would be malformed or could smuggle in another line."""
    if not is_token(name):
        raise ValueError(f"header injection: invalid header name {name!r}")
    if find_ctl(value):
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
        return self._build(self._start, Headers.parsed(text, raw))

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


def _fields(text: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a header section that parsed before (see `Headers`)."""
    return [(name, value.strip(" \t")) for name, value in _findall_header_lines(text)]


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
    if not is_token(name):
        return "invalid header name"
    return "invalid character in header value"


class RequestParser(_HeadParser[tuple[str, str, str, str], Request]):
    """Incremental parser for one request head.

    The server answers GET only (the upgrade and the plain GET routes), in HTTP/1.1 only
    (the version RFC 6455's upgrade is defined in), so other methods and versions are
    refused on the request line, before any header is buffered.
    """

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
            if not is_token(method) or not _is_http_version(version):
                raise HandshakeError(400, "malformed request line")
            # RFC 6455 4.2.1: "An HTTP/1.1 or higher GET request". Later versions do
            # not use this upgrade mechanism, so only HTTP/1.1 is accepted.
            raise HandshakeError(400, "HTTP/1.1 required")
        if method != "GET":
            if not is_token(method):
                raise HandshakeError(400, "malformed request line")
            raise HandshakeError(405, "only GET can open a WebSocket", [("Allow", "GET")])
        if not is_target(target):
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
        _, target, path, query = start
        # The method can only be GET here (_parse_start_line): the constant, not a string
        # of its own for every open connection.
        return Request("GET", target, path, query, "HTTP/1.1", headers)


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
        if not _is_status_code(code) or sep not in ("", " ") or find_ctl(reason):
            raise InvalidHandshake(f"invalid response from server: malformed status line {text!r}")
        if version != "HTTP/1.1":
            raise InvalidHandshake(f"invalid response from server: unsupported version {version!r}")
        return int(code), reason

    def _build(self, start: tuple[int, str], headers: Headers) -> ClientResponse:
        status, reason = start
        return ClientResponse(status, reason, headers)
