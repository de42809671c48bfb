"""An asyncio WebSocket client on the same protocol core as the server.

    async with fastws.connect("ws://127.0.0.1:8000/", subprotocols=["chat"]) as ws:
        await ws.send("hello")
        print(await ws.recv())

    async for ws in fastws.connect("ws://127.0.0.1:8000/"):  # reconnects, with back-off
        try:
            async for message in ws:
                ...
        except fastws.ConnectionClosed:
            continue

It follows the `websockets` library's client where its users rely on it: the reconnecting
iterator and which errors it retries, `headers=` as a dict or a list, `ws.response`,
keepalive pings by default (every 20 s, 20 s for the pong), InvalidURI for a bad URI.
The opening handshake is `fastws.protocol.client`'s, shared with the blocking client
(`fastws.sync`). Frames are masked (RFC 6455 5.3) with a fresh key from `os.urandom`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as _ssl
import traceback
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any

from .exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from .protocol.client import ClientHandshake, HeadersLike, compression_options, parse_uri
from .protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .protocol.deflate import DeflateOptions
from .protocol.handshake import ClientResponse
from .websocket import WebSocket

__all__ = [
    "ClientProtocol",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "backoff",
    "connect",
    "process_exception",
]

logger = logging.getLogger("fastws.client")


def _consume(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (its awaiter may be gone: open_timeout)."""
    if not fut.cancelled():
        fut.exception()


class ClientProtocol(WebSocket):
    """The client side of a connection: sends the upgrade request, checks the response."""

    __slots__ = ("_client", "_handshake", "response")
    #: The server's 101 response: `status`, `reason`, `headers` (set by the handshake, before
    #: `connect` hands the connection out, so never None where a user sees it).
    response: ClientResponse

    def __init__(self, handshake: ClientHandshake, **options: Any) -> None:
        super().__init__(client=True, **options)
        self._client: ClientHandshake | None = handshake
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        self._handshake.add_done_callback(_consume)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._transport is not None and self._client is not None
        self._transport.write(self._client.request)

    async def opened(self) -> None:
        """Wait for the opening handshake: returns once the server accepted it, raises
        InvalidHandshake (or InvalidStatus) if it did not."""
        await self._handshake

    def _handshake_data(self, data: memoryview) -> None:
        client = self._client
        if client is None:
            return  # refused already; the transport is closing
        try:
            response = client.receive_data(data)
        except Exception as exc:
            self._client = None
            if not isinstance(exc, InvalidHandshake):  # a bug, not the server's fault: say so
                exc = InvalidHandshake(f"invalid response from server: {exc!r}", client.response)
            if not self._handshake.done():
                self._handshake.set_exception(exc)
            if self._transport is not None:
                # RFC 6455 4.1: the client "MUST _Fail the WebSocket Connection_": no
                # Close frame before the connection is open, just close TCP.
                self._transport.close()
            return
        if response is None:
            return
        self._client = None
        self.response = response
        self.subprotocol = client.subprotocol
        if client.deflate is not None:
            self._conn.deflate = client.deflate
        if not self._handshake.done():
            self._handshake.set_result(None)
        self._opened(client.leftover)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake.done():
            client = self._client
            if client is not None:
                self._handshake.set_exception(client.connection_lost(exc))
            else:
                self._handshake.set_exception(InvalidHandshake("connection closed"))
        super().connection_lost(exc)


# -- reconnecting ------------------------------------------------------------------------------


def backoff(
    initial_delay: float = 5.0,
    min_delay: float = 3.1,
    max_delay: float = 90.0,
    factor: float = 1.618,
) -> Iterator[float]:
    """Seconds to wait before each reconnection attempt: a random delay up to
    `initial_delay` first, then `min_delay` growing by `factor` up to `max_delay`.

    RFC 6455 7.2.3: "the first reconnect attempt SHOULD be delayed by a random amount of
    time" and "subsequent reconnects SHOULD be delayed by a truncated binary exponential
    backoff", so that many clients cut off at once do not all come back at once. The
    defaults are the `websockets` library's.
    """
    yield random.random() * initial_delay
    delay = min_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay


#: Statuses a proxy or a restarting server answers with for a while (websockets retries the same).
RETRY_STATUSES = frozenset((500, 502, 503, 504))


def process_exception(exc: Exception) -> Exception | None:
    """Whether `async for ws in connect(...)` retries after `exc`: None to retry, an
    exception to raise (the loop ends).

    Retried, as `websockets` does, because trying again may succeed: OSError (refused,
    reset, unreachable), TimeoutError (open_timeout), a connection closed during the opening
    handshake, and HTTP 500, 502, 503, 504. Raised: everything else, e.g. a 4xx refusal, a
    response that breaks RFC 6455, and (unlike websockets) a TLS certificate that does not
    verify, because none of them goes away by itself.
    """
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return exc
    if isinstance(exc, OSError | TimeoutError):
        return None
    if isinstance(exc, InvalidStatus):
        return None if exc.response.status in RETRY_STATUSES else exc
    if isinstance(exc, InvalidHandshake) and isinstance(exc.__cause__, EOFError | OSError):
        return None
    return exc


# -- connect -----------------------------------------------------------------------------------


class connect:
    """Open a WebSocket connection to `url`.

    - `ws = await connect(url)`: one connection.
    - `async with connect(url) as ws:`: one connection, closed at the end of the block.
    - `async for ws in connect(url):`: a connection, and a new one each time the loop comes
      round again (after the previous one closed), retrying failed attempts with `backoff`
      delays while `process_exception` says the error is transient.

    `headers` are extra request headers: a dict or a list of (name, value) pairs
    (`additional_headers` is the same, under the `websockets` library's name). Keepalive:
    a ping every `ping_interval` seconds; no pong within `ping_timeout` closes the
    connection with 1011 (None turns either off).

    Raises InvalidURI (at once) for a URL that is not ws:// or wss://; when opening, OSError
    when TCP fails, TimeoutError after `open_timeout`, InvalidStatus when the server refuses
    the upgrade (`exc.response.status`) and InvalidHandshake when it answers wrongly.
    """

    def __init__(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        additional_headers: HeadersLike | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        open_timeout: float | None = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_queue: int = 16,
        write_limit: int = 64 * 1024,
        close_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        local_addr: tuple[str, int] | None = None,
        compression: str | DeflateOptions | None = None,
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
    ) -> None:
        if headers is not None and additional_headers is not None:
            raise TypeError("pass headers or additional_headers, not both")
        self.url = url
        self.uri = parse_uri(url)  # InvalidURI here, not at the first attempt
        self.compression = compression_options(compression)
        self.subprotocols = tuple(subprotocols)
        self.headers = headers if headers is not None else additional_headers
        # Checked now (ValueError, TypeError) rather than at each attempt of a reconnect loop.
        ClientHandshake(
            self.uri,
            subprotocols=self.subprotocols,
            headers=self.headers,
            compression=self.compression,
        )
        self.ssl = ssl
        self.open_timeout = open_timeout
        self.local_addr = local_addr
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.options: dict[str, Any] = {
            "max_message_size": max_message_size,
            "max_frame_size": max_frame_size,
            "max_fragments": max_fragments,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "close_timeout": close_timeout,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
        }
        self._ws: ClientProtocol | None = None

    async def _connect(self) -> ClientProtocol:
        uri = self.uri
        handshake = ClientHandshake(
            uri,
            subprotocols=self.subprotocols,
            headers=self.headers,
            compression=self.compression,
        )
        ssl_context = self.ssl
        if uri.secure and ssl_context is None:
            ssl_context = True
        loop = asyncio.get_running_loop()
        transport, ws = await loop.create_connection(
            lambda: ClientProtocol(handshake, **self.options),
            uri.host,
            uri.port,
            ssl=ssl_context or None,
            local_addr=self.local_addr,
        )
        try:
            await ws.opened()
        except BaseException:
            transport.abort()
            raise
        ws.request = None
        return ws

    async def _open(self) -> ClientProtocol:
        if self.open_timeout is None:
            return await self._connect()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
        # lands as the connection completes, and a reconnecting loop would then run on.
        async with asyncio.timeout(self.open_timeout):
            return await self._connect()

    def __await__(self) -> Generator[Any, None, ClientProtocol]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientProtocol:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._ws is not None
        await self._ws.close()

    async def __aiter__(self) -> AsyncIterator[ClientProtocol]:
        delays: Iterator[float] | None = None
        while True:
            try:
                async with self as ws:
                    yield ws
            except Exception as exc:
                try:
                    fatal = self.process_exception(exc)
                except Exception as raised:  # raising instead of returning: same meaning
                    fatal = raised
                if fatal is exc:
                    raise
                if fatal is not None:
                    raise fatal from exc
                if delays is None:
                    delays = self.reconnect_delays()
                delay = next(delays)
                logger.info(
                    "connect to %s failed; reconnecting in %.1f s: %s",
                    self.url,
                    delay,
                    traceback.format_exception_only(exc)[0].strip(),
                )
                await asyncio.sleep(delay)
            else:
                delays = None  # connected: the next failure starts the back-off again
