"""Every fastws setting, declared once.

Each field of :class:`Config` is a knob with one name and three spellings: the
Python keyword argument (``max_message_size=``), the command-line flag
(``--max-message-size``) and the environment variable
(``FASTWS_MAX_MESSAGE_SIZE``). A field's metadata says how to parse the knob from
a string, how to validate it and how to document it; the CLI flags, the
environment lookup, the error messages and the README options table are all
generated from it. Adding a knob means adding a field, nothing else.
"""

import argparse
import difflib
import importlib
import importlib.util
import ipaddress
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, Self

__all__ = [
    "ENV_PREFIX",
    "MAX_SIZE",
    "Config",
    "ConfigError",
    "Option",
    "import_object",
    "parse_duration",
    "parse_size",
]

logger = logging.getLogger("fastws.config")

#: Environment variables are this prefix followed by the field name in upper case.
ENV_PREFIX = "FASTWS_"

#: Largest accepted size: sizes are compared with 64-bit frame lengths.
MAX_SIZE = 2**63 - 1


class ConfigError(ValueError):
    """A setting has the wrong type or value, or does not exist.

    The message names the knob in every spelling it may have come from, because
    the user may have set it as a keyword, a flag or an environment variable.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        #: Field name of the offending knob (``None`` for an unknown knob).
        self.option = option


# --- parsing helpers ---------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    **{p: 1024**n for n, p in enumerate("kmgt", 1)},
    **{p + "ib": 1024**n for n, p in enumerate("kmgt", 1)},
    **{p + "b": 1000**n for n, p in enumerate("kmgt", 1)},
}
_SIZE_RE = re.compile(r"\s*(\d+(?:_\d+)*(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_SIZE_EXAMPLES = "examples: 1048576, 64KiB, 16MiB, 2GiB"


def parse_size(value: str | int) -> int:
    """Return a number of bytes from an int or a string such as ``"16MiB"``.

    ``k``/``KiB``, ``M``/``MiB``, ``G``/``GiB``, ``T``/``TiB`` are powers of 1024;
    ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000, as the units are defined.
    Case and spaces don't matter and fractions are fine if the result is a whole
    number of bytes (``"1.5MiB"``). Raises :exc:`ValueError` otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value!r} is not a size (sizes can't be negative)")
        return value
    if isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)):
        unit = _SIZE_UNITS.get(match[2].lower())
        if unit is not None:
            size = Fraction(match[1].replace("_", "")) * unit
            if size.denominator != 1:
                raise ValueError(f"{value!r} is not a whole number of bytes")
            return int(size)
    raise ValueError(f"{value!r} is not a size ({_SIZE_EXAMPLES})")


_DURATION_UNITS = {
    "": Fraction(1),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
    "m": Fraction(60),
    "h": Fraction(3600),
}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_DURATION_EXAMPLES = "examples: 10, 10s, 500ms, 2m"


def parse_duration(value: str | float) -> float:
    """Return seconds from a number or a string such as ``"10s"``, ``"500ms"``, ``"2m"``.

    A bare number is seconds; ``h`` is also accepted. The result is finite and
    not negative; raises :exc:`ValueError` otherwise.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
        unit = _DURATION_UNITS.get(match[2].lower())
        if unit is not None:
            return float(Fraction(match[1]) * unit)
    raise ValueError(f"{value!r} is not a duration ({_DURATION_EXAMPLES})")


def import_object(path: str) -> Any:
    """Import ``"module:attribute"`` (the attribute may be dotted) and return it.

    Raises :exc:`ImportError` with a one-line reason, which callers prefix with
    what they were importing.
    """
    module_name, _, attribute = path.partition(":")
    names = attribute.split(".")
    if not all(part.isidentifier() for part in [*module_name.split("."), *names]):
        raise ImportError("expected 'module:attribute', e.g. 'myapp:handler'")
    obj = importlib.import_module(module_name)
    for depth, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = ".".join([module_name, *names[:depth]])
            raise ImportError(f"{owner!r} has no attribute {name!r}") from None
    return obj


# --- kinds of knobs ------------------------------------------------------------
# A kind turns whatever the user gave (a string from the CLI or the environment,
# or a Python value) into the field's value, or raises ValueError saying why not.


def _check_range(given: object, number: float, low: float, high: float | None = None) -> None:
    if number < low:
        raise ValueError(f"{given!r} is below the minimum of {low}")
    if high is not None and number > high:
        raise ValueError(f"{given!r} is above the maximum of {high}")


def _format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _format_duration(seconds: float) -> str:
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


class _Kind:
    metavar = "VALUE"

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        return str(value)


class _Text(_Kind):
    """A non-empty word without spaces, like a host name."""

    def __init__(self, metavar: str) -> None:
        self.metavar = metavar

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        text = value.strip()
        if not text or any(char.isspace() for char in text):
            raise ValueError(f"{value!r} must be one non-empty word")
        return text


class _Broker(_Text):
    """local, or the URL of a Redis server (redis://, rediss://, unix://)."""

    def __init__(self) -> None:
        super().__init__("{local,URL}")

    def __call__(self, value: Any) -> str:
        text = super().__call__(value)
        if text.lower() == "local":
            return "local"
        if not text.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is neither local nor a redis://, rediss:// or unix:// URL")
        if importlib.util.find_spec("redis") is None:  # say so now, not in every worker
            raise ValueError(
                f"{text!r} needs the redis package, which is not installed:"
                " pip install 'fastws[redis]'"
            )
        return text


class _Int(_Kind):
    """A whole number in a range, like a port or a count."""

    def __init__(self, low: int, high: int | None = None, metavar: str = "N") -> None:
        self.low, self.high, self.metavar = low, high, metavar

    def __call__(self, value: Any) -> int:
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        _check_range(value, number, self.low, self.high)
        return number


class _Size(_Kind):
    """A number of bytes (see parse_size); optional sizes also accept none."""

    metavar = "SIZE"

    def __init__(self, low: int, optional: bool = False) -> None:
        self.low, self.optional = low, optional

    def __call__(self, value: Any) -> int | None:
        if self.optional and (value is None or _is_word(value, "none")):
            return None
        size = parse_size(value)
        _check_range(value, size, self.low, MAX_SIZE)
        return size

    def show(self, value: Any) -> str:
        return "none" if value is None else _format_size(value)


class _Duration(_Kind):
    """Seconds (see parse_duration); optional durations are disabled by off or 0."""

    metavar = "DURATION"

    def __init__(self, optional: bool = False) -> None:
        self.optional = optional

    def __call__(self, value: Any) -> float | None:
        if self.optional and (value is None or _is_word(value, "off", "none")):
            return None
        seconds = parse_duration(value)
        if seconds == 0:
            if self.optional:
                return None
            raise ValueError(f"{value!r} must be greater than 0")
        return seconds

    def show(self, value: Any) -> str:
        return "off" if value is None else _format_duration(value)


class _Choice(_Kind):
    """One of a few words, case-insensitive."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.metavar = "{" + ",".join(choices) + "}"

    def __call__(self, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")


class _Switch(_Kind):
    """On or off; the flag alone (``--dashboard``) means on."""

    metavar = "[{on,off}]"  # the value is optional on the command line
    #: What the CLI flag means when given without a value.
    alone = "on"
    _ON, _OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0", "")

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if _is_word(value, *self._ON):
            return True
        if _is_word(value, *self._OFF):
            return False
        # `fastws serve --dashboard app:handler` gives the flag the APP as its value.
        raise ValueError(f"{value!r} is not on or off (an APP goes before the flag)")

    def show(self, value: Any) -> str:
        return "on" if value else "off"


class _Names(_Kind):
    """A list of words; comma-separated when given as a string."""

    def __init__(
        self,
        pattern: re.Pattern[str],
        what: str,
        metavar: str,
        *,
        optional: bool = False,
        keep_empty: bool = False,
    ) -> None:
        self.pattern, self.what = pattern, what
        self.optional, self.keep_empty = optional, keep_empty
        self.metavar = f"{metavar}[,{metavar}...]"

    def __call__(self, value: Any) -> tuple[str, ...] | None:
        if value is None and self.optional:
            return None
        if isinstance(value, str):
            if not value.strip():
                # An empty FASTWS_ORIGINS= means "not set", never "deny everyone".
                if self.optional:
                    return None
                return ()
            items = [item.strip() for item in value.split(",")]
            if not self.keep_empty:
                items = [item for item in items if item]
        elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            items = list(value)
        else:
            raise ValueError(f"{value!r} is not a list of strings")
        for item in items:
            if not self.pattern.fullmatch(item):
                raise ValueError(f"{item!r} is not a valid {self.what}")
        return tuple(items)

    def show(self, value: Any) -> str:
        return ",".join(value)


class _Networks(_Names):
    """IP addresses and networks (``10.0.0.0/8``, ``::1``), or ``*`` for any peer."""

    def __init__(self) -> None:
        super().__init__(re.compile(r"\*|[0-9A-Fa-f.:/]+"), "IP address or network", "ADDRESS")

    def __call__(self, value: Any) -> tuple[str, ...] | None:
        items = super().__call__(value)
        assert items is not None
        for item in items:
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
        return items


class _HostPort(_Text):
    """HOST:PORT, with an IPv6 host in brackets ([::1]:9100)."""

    def __init__(self) -> None:
        super().__init__("HOST:PORT")

    def __call__(self, value: Any) -> str:
        text = super().__call__(value)
        host, sep, port = text.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9100)")
        return text


class _Path(_Kind):
    """A file path; optional paths also accept none. Existence is checked when it is used."""

    metavar = "PATH"

    def __call__(self, value: Any) -> str | None:
        if value is None or _is_word(value, "none"):
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a file path")
        return value.strip()

    def show(self, value: Any) -> str:
        return "none" if value is None else str(value)


class _ImportPath(_Kind):
    """A callable, or a "module:callable" string imported when the Config is built."""

    metavar = "MODULE:CALLABLE"

    def __call__(self, value: Any) -> Callable[..., Any] | None:
        obj = value
        if isinstance(value, str):
            try:
                obj = import_object(value.strip())
            except ImportError as exc:
                raise ValueError(f"cannot import {value!r}: {exc}") from None
        if obj is not None and not callable(obj):
            raise ValueError(f"{value!r} is not callable")
        return obj


class _Optional(_Kind):
    """Another kind, or unset: none (or an empty string) means the knob is off."""

    def __init__(self, kind: _Kind) -> None:
        self.kind, self.metavar = kind, kind.metavar

    def __call__(self, value: Any) -> Any:
        if value is None or _is_word(value, "none", ""):
            return None
        return self.kind(value)

    def show(self, value: Any) -> str:
        return "none" if value is None else self.kind.show(value)


def _is_word(value: object, *words: str) -> bool:
    return isinstance(value, str) and value.strip().lower() in words


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_ORIGIN_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]*")  # printable ASCII but comma; "" = no Origin


# --- declaring knobs -------------------------------------------------------------

_SPEC = "fastws"


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: _Kind
    help: str
    example: str
    unset: str | None


def _knob(kind: _Kind, help: str, *, example: str, unset: str | None = None) -> dict[str, Any]:
    """Field metadata that makes a dataclass field a knob: drives CLI, env, docs and checks.

    ``example`` is a valid, non-default string value; the tests feed it through the
    flag and the environment variable so every new knob is covered automatically.
    ``unset`` describes a default that is an absence rather than a value one could
    type (``"any"`` for origins), so the docs don't suggest typing it.
    """
    return {_SPEC: _Spec(kind, help, example, unset)}


@dataclass(frozen=True, slots=True)
class Option:
    """One knob as the outside world sees it: its spellings, default and help."""

    name: str
    help: str
    default: Any
    #: The default as documented: a value you could type, unless default_literal is false.
    default_text: str
    default_literal: bool
    metavar: str
    example: str
    convert: Callable[[Any], Any]

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--max-message-size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``FASTWS_MAX_MESSAGE_SIZE``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def spellings(self) -> str:
        """All three spellings, for error messages."""
        return f"{self.name} ({self.flag} / {self.env})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Server settings, validated when built.

    Keyword arguments may be given as Python values or as the strings the CLI
    and the environment accept (``max_message_size="1MiB"``); either way they are
    parsed and checked here, so every Config in existence is one the server can
    use, and a bad value fails early with a :exc:`ConfigError`. Use
    :meth:`load` to merge in ``FASTWS_*`` environment variables and CLI flags.
    """

    host: str = field(
        default="127.0.0.1",
        metadata=_knob(
            _Text("HOST"),
            "Interface to listen on: an IP address or host name; 0.0.0.0 or :: listens on all interfaces.",
            example="0.0.0.0",
        ),
    )
    port: int = field(
        default=8000,
        metadata=_knob(
            _Int(0, 65535, metavar="PORT"),
            "TCP port to listen on (0-65535); 0 lets the OS pick a free port.",
            example="9001",
        ),
    )
    backlog: int = field(
        default=2048,
        metadata=_knob(
            _Int(1),
            "Connections the kernel may queue before the server accepts them (listen() backlog).",
            example="128",
        ),
    )
    interface: str = field(
        default="auto",
        metadata=_knob(
            _Choice("auto", "fastws", "asgi"),
            "What APP is: fastws (an async handler called with each WebSocket), asgi (an ASGI 3"
            " application such as FastAPI or Starlette: its HTTP and WebSocket routes), or auto"
            " (told apart by the callable's parameters: one for fastws, three for ASGI).",
            example="asgi",
        ),
    )
    subprotocols: tuple[str, ...] = field(
        default=(),
        metadata=_knob(
            _Names(_TOKEN_RE, "subprotocol name", "NAME"),
            "Subprotocols the server supports, most preferred first; the first one the client also"
            " offers is selected. Comma-separated on the command line and in the environment.",
            example="chat,superchat",
            unset="none",
        ),
    )
    origins: tuple[str, ...] | None = field(
        default=None,
        metadata=_knob(
            _Names(_ORIGIN_RE, "Origin value", "ORIGIN", optional=True, keep_empty=True),
            "Allow-list of Origin header values (e.g. https://example.com), compared"
            " case-insensitively; other origins get 403. Clients sending no Origin (non-browser"
            " clients) are refused too unless the list has an empty entry (e.g. a trailing comma)."
            " Unset accepts any origin. Comma-separated on the command line and in the environment.",
            example="https://example.com,https://www.example.com",
            unset="any",
        ),
    )
    process_request: Callable[..., Any] | None = field(
        default=None,
        metadata=_knob(
            _ImportPath(),
            "Hook called as process_request(ws, request) with every HTTP request on the port,"
            " upgrade or not (/healthz, /metrics and /dashboard included): returning a response"
            " sends it instead; None goes on. ws is the connection (remote_address; attributes"
            " set here are the handler's to read). process_request(request) works too. A"
            " module:callable import path on the command line and in the environment.",
            example="fastws.apps.echo:echo",
            unset="none",
        ),
    )
    process_response: Callable[..., Any] | None = field(
        default=None,
        metadata=_knob(
            _ImportPath(),
            "Hook called as process_response(ws, request, response) with the 101 response before"
            " it is sent: it may change response.headers in place or return another response"
            " (not 101: the upgrade is refused). A module:callable import path on the command"
            " line and in the environment.",
            example="fastws.apps.echo:echo",
            unset="none",
        ),
    )
    select_subprotocol: Callable[..., Any] | None = field(
        default=None,
        metadata=_knob(
            _ImportPath(),
            "Callable select_subprotocol(ws, offered) choosing the subprotocol among those the"
            " client offered (a list, in its order), or None for none; replaces subprotocols. A"
            " module:callable import path on the command line and in the environment.",
            example="fastws.apps.echo:echo",
            unset="none",
        ),
    )
    forwarded_allow_ips: tuple[str, ...] = field(
        default=(),
        metadata=_knob(
            _Networks(),
            "Trusted proxies: addresses or networks (10.0.0.0/8, ::1) whose Forwarded /"
            " X-Forwarded-For headers, and PROXY protocol headers in proxy_protocol optional mode,"
            " are believed; ws.remote_address is then the client they name (the nearest address"
            " not itself trusted). * trusts every peer. Unset believes no proxy.",
            example="127.0.0.1,10.0.0.0/8",
            unset="none",
        ),
    )
    proxy_protocol: str = field(
        default="off",
        metadata=_knob(
            _Choice("off", "optional", "require"),
            "PROXY protocol (v1 and v2, as HAProxy's send-proxy / send-proxy-v2 and nginx's"
            " proxy_protocol send it) before the HTTP request: require refuses a connection"
            " without one and believes every one (only the proxy must be able to reach the"
            " port); optional reads one if present and believes it from forwarded_allow_ips"
            " peers only. Not with certfile (TLS would have to come after it).",
            example="require",
        ),
    )
    certfile: str | None = field(
        default=None,
        metadata=_knob(
            _Path(),
            "PEM file with the server's certificate chain (and its private key, unless keyfile"
            " is given): the server then speaks TLS only (wss://).",
            example="/etc/fastws/cert.pem",
            unset="none (no TLS)",
        ),
    )
    keyfile: str | None = field(
        default=None,
        metadata=_knob(
            _Path(),
            "PEM file with the private key of certfile, when the key is not in certfile.",
            example="/etc/fastws/key.pem",
            unset="none",
        ),
    )
    max_message_size: int = field(
        default=16 * 1024**2,
        metadata=_knob(
            _Size(1),
            "Largest message accepted, in bytes, once its fragments are reassembled; a bigger"
            " message closes the connection with 1009 (message too big).",
            example="1MiB",
        ),
    )
    max_message_memory: int = field(
        default=1024**3,
        metadata=_knob(
            _Size(1),
            "Bytes that large received messages (1 MiB and up) may hold in one worker; above"
            " it a connection starting a new large message stops reading until memory is"
            " released (backpressure instead of running out of memory).",
            example="4GiB",
        ),
    )
    buffer_cache: int = field(
        default=64 * 1024**2,
        metadata=_knob(
            _Size(0),
            "Bytes of released large-message buffers one worker keeps mapped for reuse (a"
            " fresh buffer pays a page fault per 4 KiB written); unused ones are unmapped"
            " after 10 s. 0: unmap every buffer when its message is released.",
            example="256MiB",
        ),
    )
    max_frame_size: int | None = field(
        default=None,
        metadata=_knob(
            _Size(1, optional=True),
            "Largest single frame accepted, in bytes; unset means max_message_size, and larger"
            " values are capped to it.",
            example="64KiB",
            unset="max_message_size",
        ),
    )
    max_fragments: int = field(
        default=100_000,
        metadata=_knob(
            _Int(1),
            "Most frames one message may be split into; bounds the work a flood of tiny"
            " fragments can cause.",
            example="1000",
        ),
    )
    compression: str = field(
        default="off",
        metadata=_knob(
            _Choice("off", "deflate"),
            "Per-message compression: deflate accepts a client's permessage-deflate offer"
            " (RFC 7692; browsers offer it), off leaves offers unanswered. max_message_size then"
            " limits the decompressed size.",
            example="deflate",
        ),
    )
    compression_window_bits: int = field(
        default=15,
        metadata=_knob(
            _Int(9, 15, metavar="BITS"),
            "Largest LZ77 window (log2 bytes) the server compresses with and, when the client"
            " allows it, asks the client to use; smaller windows cost less memory per"
            " connection with context takeover.",
            example="12",
        ),
    )
    compression_memory_level: int = field(
        default=8,
        metadata=_knob(
            _Int(1, 9),
            "Memory level (zlib memLevel, 1-9) of the server's compressor: memory for speed and ratio.",
            example="5",
        ),
    )
    compression_level: int = field(
        default=1,
        metadata=_knob(
            _Int(0, 9),
            "Compression level (zlib, 0-9): 1 is fastest, 9 compresses most; on ~1 KiB JSON"
            " messages 1 is within 2% of 6's ratio at half its CPU.",
            example="6",
        ),
    )
    compression_min_size: int = field(
        default=256,
        metadata=_knob(
            _Size(0),
            "Messages shorter than this are sent uncompressed (compressing them costs more"
            " CPU than it saves bytes).",
            example="1KiB",
        ),
    )
    compression_context_takeover: str = field(
        default="none",
        metadata=_knob(
            _Choice("none", "server", "client", "both"),
            "Which side may keep its compression window between messages: better ratio on"
            " streams of similar messages, but that side's zlib context (up to ~300 KiB per"
            " connection at 15 window bits) then lives as long as the connection. none keeps"
            " idle compressed connections as cheap as uncompressed ones.",
            example="both",
        ),
    )
    max_queue: int = field(
        default=16,
        metadata=_knob(
            _Int(1),
            "Messages received but not yet read by the handler; when that many are waiting,"
            " the server stops reading from the socket until the handler catches up.",
            example="4",
        ),
    )
    write_limit: int = field(
        default=64 * 1024,
        metadata=_knob(
            _Size(0),
            "Bytes the outgoing buffer may hold: send() waits while more than this is buffered,"
            " so a slow client can't make the server hoard memory.",
            example="1MiB",
        ),
    )
    write_timeout: float | None = field(
        default=60.0,
        metadata=_knob(
            _Duration(optional=True),
            "Close a connection with 1008 when its outgoing buffer is over write_limit and the"
            " peer has read none of it for this long (a client that never reads); off (or 0)"
            " waits forever. Meanwhile the server also stops reading from that peer.",
            example="5s",
        ),
    )
    message_timeout: float | None = field(
        default=60.0,
        metadata=_knob(
            _Duration(optional=True),
            "Close a connection with 1008 when a message (or a control frame) has started"
            " arriving and is still incomplete after this long, so a peer that answers pings"
            " but trickles a message cannot hold it forever; checked at each keepalive ping"
            " (up to ping_interval late). Raise it for large uploads over slow links (16 MiB"
            " in 60 s needs 2.2 Mbit/s); off (or 0) waits forever.",
            example="5m",
        ),
    )
    body_timeout: float | None = field(
        default=60.0,
        metadata=_knob(
            _Duration(optional=True),
            "ASGI apps' HTTP requests: a request body still incomplete this long after its"
            " head arrived (a client that trickles it, or stops) is answered 408 and its"
            " connection closed (closed only, when the response has begun). Time the server"
            " itself makes the client wait (reading paused for the application, a 100 Continue"
            " not yet sent) starts the period again. Raise it for large uploads over slow"
            " links; off (or 0) waits forever.",
            example="5m",
        ),
    )
    max_request_line: int = field(
        default=8 * 1024,
        metadata=_knob(
            _Size(1),
            "Longest HTTP request line accepted in the opening handshake, in bytes.",
            example="4KiB",
        ),
    )
    max_headers: int = field(
        default=128,
        metadata=_knob(
            _Int(1),
            "Most header fields accepted in the opening handshake.",
            example="64",
        ),
    )
    max_header_size: int = field(
        default=16 * 1024,
        metadata=_knob(
            _Size(1),
            "Largest opening-handshake request head (request line and all headers) accepted, in bytes.",
            example="8KiB",
        ),
    )
    handshake_timeout: float = field(
        default=10.0,
        metadata=_knob(
            _Duration(),
            "Time a client has to complete the opening handshake after connecting"
            " (seconds, or e.g. 500ms, 2m).",
            example="5s",
        ),
    )
    close_timeout: float = field(
        default=10.0,
        metadata=_knob(
            _Duration(),
            "Time to wait for the peer to answer a close frame and close TCP before the"
            " connection is dropped.",
            example="2s",
        ),
    )
    failure_grace: float = field(
        default=1.0,
        metadata=_knob(
            _Duration(),
            "When a peer breaks the protocol right after complete messages, the handler gets"
            " this long to answer them before the connection is closed with the RFC's code"
            " (what it sends in answer goes out before the Close frame).",
            example="200ms",
        ),
    )
    ping_interval: float | None = field(
        default=20.0,
        metadata=_knob(
            _Duration(optional=True),
            "Send a keepalive ping this often to detect dead connections; off (or 0) disables"
            " keepalive pings.",
            example="30s",
        ),
    )
    ping_timeout: float | None = field(
        default=20.0,
        metadata=_knob(
            _Duration(optional=True),
            "Close the connection if a keepalive ping gets no pong within this time; off (or 0)"
            " waits forever.",
            example="500ms",
        ),
    )
    loop: str = field(
        default="auto",
        metadata=_knob(
            _Choice("auto", "uvloop", "asyncio"),
            "Event loop: uvloop, asyncio, or auto (uvloop when it is installed, else asyncio).",
            example="asyncio",
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_knob(
            _Choice("debug", "info", "warning", "error"),
            "Level of the log messages written to stderr by the fastws logger.",
            example="debug",
        ),
    )
    log_format: str = field(
        default="text",
        metadata=_knob(
            _Choice("text", "json"),
            "Format of the log lines on stderr: text, or json (one JSON object per line: time,"
            " level, logger, message, and the access log's fields).",
            example="json",
        ),
    )
    log_config: str | None = field(
        default=None,
        metadata=_knob(
            _Path(),
            "Logging configuration file, applied by the fastws command instead of log_level and"
            " log_format: a .json file is a logging.config.dictConfig dictionary, any other an"
            " INI file for logging.config.fileConfig. Loggers: fastws, fastws.access.",
            example="logging.json",
            unset="none",
        ),
    )
    access_log: bool = field(
        default=False,
        metadata=_knob(
            _Switch(),
            "Log one line per connection to the fastws.access logger (level info) when it"
            " ends (per request for an ASGI application's HTTP requests): client address,"
            " request line, HTTP status (101 for a WebSocket), subprotocol, close code,"
            " duration, and bytes received / sent on its socket (from the kernel's TCP"
            " counters: headers, framing and TLS included; - on a Unix socket).",
            example="on",
        ),
    )
    workers: int = field(
        default=os.cpu_count() or 1,
        metadata=_knob(
            _Int(0),
            "Worker processes forked by a master that binds the socket, supervises them and"
            " handles TERM/INT/QUIT/HUP/TTIN/TTOU; 1 keeps the master with one worker, 0 serves"
            " in a single process without a master.",
            example="13",
            unset="number of CPUs",
        ),
    )
    socket_mode: str = field(
        default="reuseport",
        metadata=_knob(
            _Choice("reuseport", "shared"),
            "How workers share the TCP port: reuseport gives each worker slot its own"
            " SO_REUSEPORT socket (the kernel spreads connections evenly), shared has every"
            " worker accept from one socket. The master creates the sockets either way.",
            example="shared",
        ),
    )
    uds: str | None = field(
        default=None,
        metadata=_knob(
            _Optional(_Text("PATH")),
            "Listen on this Unix domain socket path instead of host and port.",
            example="/tmp/fastws.sock",
        ),
    )
    fd: int | None = field(
        default=None,
        metadata=_knob(
            _Optional(_Int(0, metavar="FD")),
            "Listen on an already-bound socket inherited as this file descriptor (from systemd"
            " or a parent process) instead of host and port.",
            example="3",
        ),
    )
    worker_timeout: float | None = field(
        default=30.0,
        metadata=_knob(
            _Duration(optional=True),
            "A worker whose event loop writes no heartbeat for this long is killed and"
            " replaced; off (or 0) disables the check.",
            example="10s",
        ),
    )
    graceful_timeout: float = field(
        default=30.0,
        metadata=_knob(
            _Duration(),
            "On TERM/INT or a reload, time workers have to finish the close handshakes (Close"
            " 1001) with their clients before they are stopped.",
            example="5s",
        ),
    )
    max_connections: int | None = field(
        default=None,
        metadata=_knob(
            _Optional(_Int(1)),
            "Connections one worker holds at most; further handshakes get 503 with Retry-After."
            " none means no limit but the open-file limit.",
            example="1000",
        ),
    )
    broadcast_limit: int = field(
        default=1 << 20,
        metadata=_knob(
            _Size(0),
            "Bytes a connection's outgoing buffer may hold (at least write_limit) for"
            " broadcast() and channel messages to still be written to it; a connection further"
            " behind gets broadcast_overflow, so one slow client never delays the others.",
            example="256KiB",
        ),
    )
    broadcast_overflow: str = field(
        default="close",
        metadata=_knob(
            _Choice("close", "skip"),
            "What a connection over broadcast_limit gets: close closes it with 1008 (it would"
            " otherwise miss messages without knowing), skip leaves this message out for it."
            " Counted in /metrics as broadcast_closed / broadcast_skipped.",
            example="skip",
        ),
    )
    broker: str = field(
        default="local",
        metadata=_knob(
            _Broker(),
            "What carries channel messages (publish) between workers: local is a shared-memory"
            " ring on this host, no broker process; a redis:// (or rediss://, unix://) URL uses"
            " Redis pub/sub, which also reaches other hosts.",
            example="redis://127.0.0.1:6379/0",
        ),
    )
    pubsub_ring_size: int = field(
        default=16 << 20,
        metadata=_knob(
            _Size(4096),
            "Bytes of each worker's shared-memory ring for channel messages (broker local;"
            " memory is used only as messages pass). It bounds the largest message published"
            " across workers and how far a busy worker may fall behind before its subscribers"
            " are closed with 1013.",
            example="64MiB",
        ),
    )
    dashboard: bool = field(
        default=False,
        metadata=_knob(
            _Switch(),
            "Serve a live dashboard page at /dashboard on the server's port (the --dashboard"
            " flag alone turns it on): per worker and in total, connections, handshakes,"
            " messages and bytes per second, close codes and memory, from the same counters as"
            " /metrics, pushed each second over a WebSocket. Like /metrics it goes through"
            " process_request, or to monitor_address when that is set.",
            example="on",
        ),
    )

    metrics: bool = field(
        default=True,
        metadata=_knob(
            _Switch(),
            "Answer GET /metrics (Prometheus text format) on the server's port, or on"
            " monitor_address when that is set.",
            example="off",
        ),
    )
    healthz: bool = field(
        default=True,
        metadata=_knob(
            _Switch(),
            "Answer GET /healthz (JSON) on the server's port, or on monitor_address when that is"
            " set.",
            example="off",
        ),
    )
    monitor_address: str | None = field(
        default=None,
        metadata=_knob(
            _Optional(_HostPort()),
            "Serve /metrics, /healthz and /dashboard (those switched on) on this HOST:PORT"
            " instead of the server's port: plain HTTP, no application hook; other paths get"
            " 404. Each worker listens on it (SO_REUSEPORT).",
            example="127.0.0.1:9100",
            unset="none (the server's port)",
        ),
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Reject unknown knobs here rather than with the dataclass's TypeError, so
        # the error is a ConfigError like every other bad setting.
        _check_names(kwargs, cls.options())
        return object.__new__(cls)

    def __post_init__(self) -> None:
        for option in self.options():
            value = getattr(self, option.name)
            try:
                converted = option.convert(value)
            except ValueError as exc:
                raise ConfigError(
                    f"invalid value for {option.spellings}: {exc}", option.name
                ) from None
            object.__setattr__(self, option.name, converted)
        if self.proxy_protocol != "off" and self.certfile is not None:
            raise ConfigError(
                "proxy_protocol (--proxy-protocol / FASTWS_PROXY_PROTOCOL) cannot be used with"
                " certfile: the PROXY header comes before TLS; terminate TLS at the proxy",
                "proxy_protocol",
            )

    @property
    def effective_max_frame_size(self) -> int:
        """The frame size limit actually enforced: never above max_message_size."""
        if self.max_frame_size is None:
            return self.max_message_size
        return min(self.max_frame_size, self.max_message_size)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server TLS context from certfile/keyfile, or None when TLS is off.

        Raises ConfigError for a keyfile without certfile, or files that can't be loaded.
        """
        if self.certfile is None:
            if self.keyfile is not None:
                raise ConfigError("keyfile (--keyfile / FASTWS_KEYFILE) needs certfile", "keyfile")
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # TLS 1.2+ by default
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            files = f"--certfile {self.certfile}"
            if self.keyfile is not None:
                files += f", --keyfile {self.keyfile}"
            reason = str(exc)
            if self.keyfile is None and _certificate_without_key(self.certfile):
                reason = (
                    "it holds a certificate but no private key: give the key with --keyfile"
                    " (FASTWS_KEYFILE), or put both in one PEM file"
                )
            raise ConfigError(
                f"cannot load TLS certificate/key ({files}): {reason}", "certfile"
            ) from None
        # RFC 6455 is HTTP/1.1; browsers negotiate it by ALPN when they offer it.
        context.set_alpn_protocols(["http/1.1"])
        return context

    @classmethod
    def options(cls) -> tuple[Option, ...]:
        """Describe every knob, in declaration order."""
        return _options(cls)

    @classmethod
    def load(
        cls,
        cli: argparse.Namespace | Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Self:
        """Build a Config from keyword overrides, CLI flags, ``FASTWS_*`` variables and defaults.

        Earlier sources win. ``cli`` is the namespace from a parser set up with
        :meth:`add_arguments` (only flags actually given are in it); ``environ``
        defaults to :data:`os.environ`. Empty variables count as unset, and
        unknown ``FASTWS_*`` variables are logged as a warning because they are
        most likely typos.
        """
        options = {option.name: option for option in cls.options()}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        by_env = {option.env: option for option in options.values()}
        for key in sorted(environ):
            if not key.startswith(ENV_PREFIX) or key.startswith(ENV_PREFIX + "TEST_"):
                continue  # FASTWS_TEST_* belong to fastws' own test suite, not to the server
            if key not in by_env:
                hint = _did_you_mean(key, by_env)
                logger.warning("ignoring unknown environment variable %s%s", key, hint)
            elif environ[key].strip():
                values[by_env[key].name] = environ[key]
        if cli is not None:
            given = vars(cli) if isinstance(cli, argparse.Namespace) else cli
            values.update((name, value) for name, value in given.items() if name in options)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one flag per knob to ``parser``; values stay strings for :meth:`load`.

        Defaults are suppressed so the namespace only holds flags actually given,
        which is what lets them win over the environment without hiding it.
        """
        group = parser.add_argument_group(
            "server options",
            f"Each option can also be set with its {ENV_PREFIX}* environment variable;"
            " command-line flags win over environment variables.",
        )
        for option in cls.options():
            help_text = f"{option.help} (default: {option.default_text}; env: {option.env})"
            extra: dict[str, Any] = {"metavar": option.metavar}
            alone = getattr(option.convert, "alone", None)
            if alone is not None:  # a switch: the flag alone means on (argparse adds the [])
                extra = {"metavar": option.metavar.strip("[]"), "nargs": "?", "const": alone}
            group.add_argument(
                option.flag,
                dest=option.name,
                default=argparse.SUPPRESS,
                help=help_text.replace("%", "%%"),
                **extra,
            )

    @classmethod
    def fields_table(cls) -> str:
        """Return the options as a markdown table, for the README."""
        rows = [
            "| option | CLI | env | default | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for option in cls.options():
            cells = [
                f"`{option.name}`",
                f"`{option.flag} {option.metavar}`",
                f"`{option.env}`",
                f"`{option.default_text}`" if option.default_literal else option.default_text,
                option.help,
            ]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(rows) + "\n"


def _options(cls: type) -> tuple[Option, ...]:
    options = []
    for knob in fields(cls):
        spec: _Spec = knob.metadata[_SPEC]
        options.append(
            Option(
                name=knob.name,
                help=spec.help,
                default=knob.default,
                default_text=spec.unset or spec.kind.show(knob.default),
                default_literal=spec.unset is None,
                metavar=spec.kind.metavar,
                example=spec.example,
                convert=spec.kind,
            )
        )
    return tuple(options)


def _did_you_mean(name: str, candidates: Mapping[str, object]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


def _check_names(kwargs: Mapping[str, Any], options: tuple[Option, ...]) -> None:
    known = {option.name: option for option in options}
    for name in kwargs:
        if name not in known:
            raise ConfigError(f"unknown option {name!r}{_did_you_mean(name, known)}")


def _certificate_without_key(path: str) -> bool:
    """Whether the PEM file at `path` has a certificate and no private key (a common slip:
    the key is in a file of its own and --keyfile was forgotten)."""
    try:
        with open(path, "rb") as file:
            text = file.read(1 << 20)
    except OSError:
        return False
    return b"-----BEGIN CERTIFICATE-----" in text and b"PRIVATE KEY-----" not in text
