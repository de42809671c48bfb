"""permessage-deflate (RFC 7692) on stdlib zlib: negotiation, then compress/inflate messages.

Two halves, both sans-I/O:

- Negotiation works on `handshake.parse_extensions()` output. The server picks the first
  acceptable offer (`negotiate`) and answers with `Agreement.header()`; the client builds its
  offer (`client_offer`) and checks the server's answer (`accept_agreement`).
- `PerMessageDeflate` is one connection's compression state: `compress()` a message (or
  `compress_fragment()` the pieces of one) and inflate a received one frame by frame with
  `decompress()` / `finish()`, in bounded steps so that `max_message_size` limits the
  *decompressed* size and a compression bomb fails with 1009 before it costs memory.

Memory is the cost that matters (zlib contexts dwarf everything else a connection holds):

- Without context takeover, nothing survives a message. Outgoing messages are compressed by
  one compressor per thread and parameter set, shared by every connection: each message
  ends with a full flush (Z_FULL_FLUSH), which resets the dictionary, so the bytes of one
  message never depend on another's. Incoming messages get a fresh inflater that is dropped
  when the message ends (never shared: a peer could otherwise make back-references into
  someone else's data). An idle connection holds no zlib state at all.
- With context takeover the contexts must persist between messages; they are allocated the
  first time they are needed, so a connection that never sends (or never receives) a
  compressed message still pays nothing for that direction. Costs, from zlib's own formulas
  (deflate: 2**(wbits+2) + 2**(memLevel+9) bytes + ~6 KiB; inflate: 2**wbits + ~7 KiB):
  wbits 15/memLevel 8 ~ 262 KiB + 39 KiB; wbits 12/memLevel 5 ~ 38 KiB + 11 KiB.

This is why the server's default is no context takeover either way (it may impose both,
RFC 7692 7.1.1.1 and 7.1.1.2): 10,000 idle compressed connections then cost nothing more
than 10,000 uncompressed ones.
"""

from __future__ import annotations

import re
import sys
import threading
import zlib
from dataclasses import dataclass
from typing import Final

from .frames import CloseCode, ProtocolError, encode_header

__all__ = [
    "EXTENSION_NAME",
    "Agreement",
    "DeflateOptions",
    "NegotiationError",
    "PerMessageDeflate",
    "accept_agreement",
    "broadcast_frame",
    "client_offer",
    "compressed_bound",
    "negotiate",
    "parse_params",
]

EXTENSION_NAME: Final = "permessage-deflate"

# 7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload of the
# message." (and 7.2.1 removes them when compressing)
_TAIL: Final = b"\x00\x00\xff\xff"

# 7.1.2.1: "This parameter has a decimal integer value without leading zeroes between 8 to
# 15, inclusive" (7.1.2.2 says the same for client_max_window_bits).
_is_window_bits = re.compile(r"[89]|1[0-5]").fullmatch

# zlib cannot produce raw deflate with a 256-byte window (deflateInit2 rejects wbits=-8 since
# zlib 1.2.9), so we never agree to *send* with 8; we do agree to receive with 8 but inflate
# with 9, which is always safe (a bigger window decodes everything a smaller one does) and
# tolerates peers whose zlib silently rounded 8 up to 9.
MIN_SEND_WINDOW_BITS: Final = 9

_Params = list[tuple[str, str | None]]


class NegotiationError(ValueError):
    """An extension parameter list that RFC 7692 says to decline (server) or fail on (client)."""


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """One side's compression policy (a server's or a client's).

    `window_bits` bounds both our own compressor's window and the window we ask the peer to
    use when it lets us; `level` and `memory_level` are zlib's. Messages shorter than
    `min_size` bytes are sent uncompressed (RSV1 clear), which RFC 7692 allows per message.
    `server_context_takeover` / `client_context_takeover` say whether we allow that side to
    keep its LZ77 window between messages (more ratio on streams of similar messages, at the
    memory cost described in the module docstring).
    """

    window_bits: int = 15
    memory_level: int = 8
    level: int = 1
    min_size: int = 256
    server_context_takeover: bool = False
    client_context_takeover: bool = False

    def __post_init__(self) -> None:
        if not MIN_SEND_WINDOW_BITS <= self.window_bits <= 15:
            raise ValueError("window_bits must be between 9 and 15")
        if not 1 <= self.memory_level <= 9:
            raise ValueError("memory_level must be between 1 and 9")
        if not -1 <= self.level <= 9:
            raise ValueError("level must be between -1 and 9")
        if self.min_size < 0:
            raise ValueError("min_size must not be negative")


@dataclass(frozen=True, slots=True)
class Agreement:
    """The negotiated parameters, as they appear in the server's response.

    A window of None means the parameter is absent: the sender may use up to 15 bits.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header(self) -> str:
        """The Sec-WebSocket-Extensions value of the response that accepts this agreement."""
        items = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            items.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            items.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            items.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            items.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(items)


@dataclass(frozen=True, slots=True)
class _Offer:
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    # True: the parameter without a value ("I support it in your response").
    client_max_window_bits: int | bool | None


def parse_params(params: _Params, *, response: bool) -> _Offer:
    """Validate one permessage-deflate element's parameters (an offer, or a response).

    Raises NegotiationError for what RFC 7692 5 lists: "an extension parameter not defined
    for use in an offer", "an extension parameter with an invalid value", "multiple extension
    parameters with the same name" (the same three apply to a response).
    """
    seen: set[str] = set()
    snct = cnct = False
    smwb: int | None = None
    cmwb: int | bool | None = None
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate parameter {name}")
        seen.add(name)
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            # 7.1.1.1/7.1.1.2: "This extension parameter has no value."
            if value is not None:
                raise NegotiationError(f"{name} takes no value")
            if name[0] == "s":
                snct = True
            else:
                cnct = True
        elif name == "server_max_window_bits":
            if value is None or not _is_window_bits(value):
                raise NegotiationError(f"invalid {name} {value!r}")
            smwb = int(value)
        elif name == "client_max_window_bits":
            if value is None:
                # 7.1.2.2: an offer's client_max_window_bits "has no value or a decimal
                # integer value"; a response's always has a value.
                if response:
                    raise NegotiationError(f"{name} needs a value in a response")
                cmwb = True
            elif not _is_window_bits(value):
                raise NegotiationError(f"invalid {name} {value!r}")
            else:
                cmwb = int(value)
        else:
            raise NegotiationError(f"unknown parameter {name}")
    return _Offer(snct, cnct, smwb, cmwb)


def _accept_offer(offer: _Offer, options: DeflateOptions) -> Agreement:
    """The server's answer to one valid offer, or NegotiationError to decline it."""
    # Our own (sending) window.
    smwb: int | None = options.window_bits if options.window_bits < 15 else None
    if offer.server_max_window_bits is not None:
        if offer.server_max_window_bits < MIN_SEND_WINDOW_BITS:
            # 7.1.2.1: "A server declines an extension negotiation offer with this parameter
            # if the server doesn't support it." zlib cannot deflate with a 256-byte window.
            raise NegotiationError("server_max_window_bits=8 is not supported by zlib")
        # 7.1.2.1: "A server accepts an extension negotiation offer with this parameter by
        # including the "server_max_window_bits" extension parameter in the extension
        # negotiation response to send back to the client with the same or smaller value
        # as the offer."
        smwb = min(options.window_bits, offer.server_max_window_bits)
    # The peer's window: we may only limit it if the client said it supports that.
    cmwb: int | None = None
    if offer.client_max_window_bits is not None:
        hint = 15 if offer.client_max_window_bits is True else int(offer.client_max_window_bits)
        bits = min(options.window_bits, hint)
        if bits < 15:
            cmwb = bits
    # else 7.1.2.2: "If a received extension negotiation offer doesn't have the
    # "client_max_window_bits" extension parameter, the corresponding extension negotiation
    # response to the offer MUST NOT include the "client_max_window_bits" extension
    # parameter."
    return Agreement(
        # 7.1.1.1: "A server accepting an extension negotiation offer with this parameter
        # MUST include the "server_no_context_takeover" extension parameter in the
        # corresponding extension negotiation response". Without it, we still may.
        server_no_context_takeover=offer.server_no_context_takeover
        or not options.server_context_takeover,
        # 7.1.1.2: a server "MAY include the "client_no_context_takeover" extension
        # parameter in an extension negotiation response" (whatever the offer said; echoing
        # the client's own promise makes it explicit).
        client_no_context_takeover=offer.client_no_context_takeover
        or not options.client_context_takeover,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )


def negotiate(
    extensions: list[tuple[str, _Params]], options: DeflateOptions
) -> tuple[Agreement | None, list[str]]:
    """Server side: the agreement for the first acceptable permessage-deflate offer.

    `extensions` is `parse_extensions()` of the request; a client "MAY offer multiple PMCE
    choices to the server by including multiple elements" (5), most preferred first. Returns
    (agreement or None, reasons the other offers were declined), so that the caller can log
    one line about a client that only sent bad offers. Declining is not an error: the
    connection goes on uncompressed.
    """
    declined: list[str] = []
    for name, params in extensions:
        if name != EXTENSION_NAME:
            continue
        try:
            # 5: "A server MUST decline an extension negotiation offer for this extension if
            # any of the following conditions are met": unknown, invalid or duplicate
            # parameters, or "The server doesn't support the offered configuration."
            return _accept_offer(parse_params(params, response=False), options), declined
        except NegotiationError as exc:
            declined.append(str(exc))
    return None, declined


def client_offer(options: DeflateOptions) -> str:
    """Client side: the Sec-WebSocket-Extensions value offering permessage-deflate.

    We always offer client_max_window_bits (so the server may shrink our window) and ask for
    a smaller server window or no server context takeover when our options want them.
    """
    items = [EXTENSION_NAME]
    if not options.server_context_takeover:
        items.append("server_no_context_takeover")
    if not options.client_context_takeover:
        items.append("client_no_context_takeover")
    if options.window_bits < 15:
        items.append(f"server_max_window_bits={options.window_bits}")
        items.append(f"client_max_window_bits={options.window_bits}")
    else:
        items.append("client_max_window_bits")
    return "; ".join(items)


def accept_agreement(
    extensions: list[tuple[str, _Params]], options: DeflateOptions
) -> Agreement | None:
    """Client side: check the server's Sec-WebSocket-Extensions against our offer.

    Raises NegotiationError when RFC 7692 5 says "A client MUST _Fail the WebSocket
    Connection_ if the peer server accepted an extension negotiation offer for this
    extension with an extension negotiation response meeting any of the following
    conditions": a parameter "not defined for use in a response", "with an invalid value",
    "multiple extension parameters with the same name", or "The client does not support the
    configuration that the response represents."
    """
    found = [params for name, params in extensions if name == EXTENSION_NAME]
    if not found:
        return None
    if len(found) > 1:
        raise NegotiationError("permessage-deflate accepted more than once")
    answer = parse_params(found[0], response=True)
    if answer.server_max_window_bits is not None and options.window_bits < 15:
        if answer.server_max_window_bits > options.window_bits:
            raise NegotiationError("server_max_window_bits above the offered value")
    elif answer.server_max_window_bits is None and options.window_bits < 15:
        # We asked for a smaller server window; an answer without it is an answer with 15.
        raise NegotiationError("server_max_window_bits missing from the response")
    cmwb = answer.client_max_window_bits
    assert cmwb is not True
    if isinstance(cmwb, int) and cmwb < MIN_SEND_WINDOW_BITS:
        raise NegotiationError("client_max_window_bits=8 is not supported by zlib")
    if isinstance(cmwb, int) and cmwb > options.window_bits:
        raise NegotiationError("client_max_window_bits above the offered value")
    if not options.server_context_takeover and not answer.server_no_context_takeover:
        # We offered server_no_context_takeover, and 7.1.1.1 says the server "MUST include"
        # it in its response.
        raise NegotiationError("server_no_context_takeover missing from the response")
    return Agreement(
        server_no_context_takeover=answer.server_no_context_takeover,
        client_no_context_takeover=answer.client_no_context_takeover,
        server_max_window_bits=answer.server_max_window_bits,
        client_max_window_bits=cmwb if isinstance(cmwb, int) else None,
    )


# ---------------------------------------------------------------------------
# Compression


def compressed_bound(size: int) -> int:
    """The most bytes a DEFLATE encoder may reasonably turn `size` bytes into.

    The wire-size limits of a compressed message use this, so that an incompressible message
    of exactly max_message_size bytes is not refused for its framing. It is zlib's
    conservative deflateBound (about +14%): with a small memLevel zlib emits a stored block
    per 2**(memLevel+6) bytes, 5 bytes each (websockets' memLevel 5 adds 0.24%). Compressed
    bytes are streamed into the inflater, never buffered, so this bound is about bandwidth
    (a stream of empty blocks inflates to nothing), not memory.
    """
    return size + ((size + 7) >> 3) + ((size + 63) >> 6) + 64


# One per thread: compress() and flush() are two calls, and another thread's message must
# not land between them (an event loop is one thread; fastws.sync clients may be many).
_local = threading.local()


def _shared_compressor(level: int, wbits: int, memory_level: int) -> zlib._Compress:
    """This thread's compressor for messages sent without context takeover."""
    try:
        shared: dict[tuple[int, int, int], zlib._Compress] = _local.compressors
    except AttributeError:
        shared = _local.compressors = {}
    key = (level, wbits, memory_level)
    comp = shared.get(key)
    if comp is None:
        comp = shared[key] = zlib.compressobj(level, zlib.DEFLATED, -wbits, memory_level)
    return comp


def _compress_alone(data: bytes | bytearray | memoryview, key: tuple[int, int, int]) -> bytes:
    """`data` as a self-contained deflate segment (ends with 00 00 ff ff), shared compressor.

    Z_FULL_FLUSH resets the dictionary: the next segment, whoever it is for, starts with no
    history, and this segment needs none, so a fresh inflater decodes it.
    """
    comp = _shared_compressor(*key)
    return comp.compress(data) + comp.flush(zlib.Z_FULL_FLUSH)


def broadcast_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    window_bits: int = 15,
    level: int = 1,
    memory_level: int = 8,
) -> bytes:
    """A complete compressed server frame (RSV1 set, unmasked) to write to many connections.

    Valid for every connection whose `PerMessageDeflate.broadcast_key` equals
    (level, window_bits, memory_level): those send without context takeover, so a message
    compressed once decodes on each of them.
    """
    data = _compress_alone(payload, (level, window_bits, memory_level))[:-4]
    return encode_header(opcode, len(data), rsv1=True) + data


class PerMessageDeflate:
    """One connection's permessage-deflate state; zlib objects are created on first use."""

    __slots__ = (
        "_comp",
        "_decomp",
        "_recv_takeover",
        "_recv_wbits",
        "_send_key",
        "agreement",
        "min_size",
        "send_takeover",
    )

    def __init__(self, agreement: Agreement, options: DeflateOptions, *, client: bool) -> None:
        self.agreement = agreement
        self.min_size = options.min_size
        if client:
            send_nct = agreement.client_no_context_takeover
            send_bits = agreement.client_max_window_bits
            recv_nct = agreement.server_no_context_takeover
            recv_bits = agreement.server_max_window_bits
        else:
            send_nct = agreement.server_no_context_takeover
            send_bits = agreement.server_max_window_bits
            recv_nct = agreement.client_no_context_takeover
            recv_bits = agreement.client_max_window_bits
        wbits = min(options.window_bits, send_bits or 15)
        self._send_key = (options.level, max(wbits, MIN_SEND_WINDOW_BITS), options.memory_level)
        # We may always refrain from context takeover, even where the peer allows it.
        allowed = options.client_context_takeover if client else options.server_context_takeover
        self.send_takeover = allowed and not send_nct
        self._recv_wbits = max(recv_bits or 15, MIN_SEND_WINDOW_BITS)
        self._recv_takeover = not recv_nct
        self._comp: zlib._Compress | None = None
        self._decomp: zlib._Decompress | None = None

    @property
    def broadcast_key(self) -> tuple[int, int, int] | None:
        """(level, window_bits, memory_level) if `broadcast_frame` output suits this peer."""
        return None if self.send_takeover else self._send_key

    # -- sending -------------------------------------------------------------------------

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """A whole message's payload, compressed (7.2.1), to send with RSV1 set."""
        return self.compress_fragment(data, True)

    def compress_fragment(self, data: bytes | bytearray | memoryview, fin: bool) -> bytes:
        """The next frame of a compressed message; the tail is removed from the last one.

        7.2.1: "If the resulting data does not end with an empty DEFLATE block with no
        compression (the "BTYPE" bits are set to 00), append an empty DEFLATE block with no
        compression to the tail end. Remove 4 octets (that are 0x00 0x00 0xff 0xff) from
        the tail end." A sync (or full) flush always ends with exactly that empty block.
        """
        if self.send_takeover:
            comp = self._comp
            if comp is None:
                level, wbits, mem = self._send_key
                comp = self._comp = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem)
            out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        else:
            # Each fragment is self-contained, so other connections may use the shared
            # compressor between our fragments.
            out = _compress_alone(data, self._send_key)
        if not fin:
            return out
        return out[:-4]

    # -- receiving -----------------------------------------------------------------------

    def decompress(
        self, data: bytes | bytearray | memoryview, limit: int, fin: bool = False
    ) -> bytes:
        """Inflate the next payload bytes of a compressed message; at most `limit` bytes.

        With `fin`, `data` ends the message: 7.2.2 "Append 4 octets of 0x00 0x00 0xff 0xff to
        the tail end of the payload of the message." (done here, in the same zlib call, so a
        one-frame message inflates into a single bytes object).

        Raises ProtocolError(1009) as soon as the output would exceed `limit` (what is left of
        max_message_size): zlib is asked for at most limit + 1 bytes, so a bomb costs at most
        that much memory whatever its ratio. 1007 for data that is not valid DEFLATE.
        """
        decomp = self._decomp
        if decomp is None:
            decomp = self._decomp = zlib.decompressobj(-self._recv_wbits)
        if fin:
            data = bytes(data) + _TAIL if data else _TAIL
        try:
            out = decomp.decompress(data, min(limit + 1, sys.maxsize))
        except zlib.error as exc:
            self._decomp = None
            raise ProtocolError(CloseCode.INVALID_DATA, f"bad compressed data: {exc}") from None
        if len(out) > limit:
            # Output stopped at limit + 1 bytes: the message is over the limit. (Output below
            # max_length means zlib consumed all the input: it only stops early when the
            # output buffer is full.)
            self._decomp = None
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG, "decompressed message exceeds the message limit"
            )
        if fin and (not self._recv_takeover or decomp.eof):
            # Nothing survives the message. (7.2.3.3: a peer may also end a message with a
            # BFINAL block; the stream then ends and the next message needs a new inflater.)
            self._decomp = None
        return out

    def abort(self) -> None:
        """Drop a half-received message's inflater (the connection is failing)."""
        self._decomp = None
        self._comp = None
