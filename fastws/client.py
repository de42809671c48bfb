"""An asyncio WebSocket client on the same protocol core as the server.

    async with fastws.connect("ws://127.0.0.1:8000/", subprotocols=["chat"]) as ws:
        await ws.send("hello")
        print(await ws.recv())

It exists for fastws' own tests, benchmarks and load tests, and for applications that want one
library on both sides. Frames are masked (RFC 6455 5.3) with a fresh key from `os.urandom`.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import urlsplit

from .protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .protocol.deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    NegotiationError,
    PerMessageDeflate,
    accept_agreement,
    client_offer,
)
from .protocol.handshake import (
    InvalidHandshake,
    ResponseParser,
    check_response,
    client_request,
    generate_key,
    parse_extensions,
)
from .websocket import WebSocket

__all__ = ["ClientProtocol", "InvalidHandshake", "connect"]


class ClientProtocol(WebSocket):
    """The client side of a connection: sends the upgrade request, checks the response."""

    __slots__ = (
        "_deflate_options",
        "_handshake",
        "_key",
        "_parser",
        "_request_bytes",
        "_subprotocols",
    )

    def __init__(
        self,
        request: bytes,
        key: str,
        subprotocols: Sequence[str],
        deflate: DeflateOptions | None = None,
        **options: Any,
    ) -> None:
        super().__init__(client=True, **options)
        self._deflate_options = deflate  # what we offered, if anything
        self._request_bytes = request
        self._key = key
        self._subprotocols = tuple(subprotocols)
        self._parser: ResponseParser | None = ResponseParser()
        self._handshake: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._transport is not None
        self._transport.write(self._request_bytes)

    def _handshake_data(self, data: memoryview) -> None:
        parser = self._parser
        if parser is None:
            return
        try:
            response = parser.feed(data)
            if response is None:
                return
            self._parser = None
            offered = (EXTENSION_NAME,) if self._deflate_options is not None else ()
            self.subprotocol = check_response(
                response, self._key, self._subprotocols, extensions=offered
            )
            if self._deflate_options is not None:
                self._accept_compression(response.headers.get_all("Sec-WebSocket-Extensions"))
        except Exception as exc:
            self._parser = None
            if not self._handshake.done():
                self._handshake.set_exception(
                    exc if isinstance(exc, InvalidHandshake) else InvalidHandshake(str(exc))
                )
            if self._transport is not None:
                self._transport.close()
            return
        self._handshake.set_result(None)
        self._opened(parser.leftover)

    def _accept_compression(self, values: list[str]) -> None:
        assert self._deflate_options is not None
        try:
            agreement = accept_agreement(parse_extensions(values), self._deflate_options)
        except NegotiationError as exc:
            # RFC 7692 5: "A client MUST _Fail the WebSocket Connection_ if the peer server
            # accepted an extension negotiation offer for this extension with an extension
            # negotiation response meeting any of the following conditions" (see
            # accept_agreement).
            raise InvalidHandshake(f"invalid permessage-deflate response: {exc}") from None
        if agreement is not None:
            self._conn.deflate = PerMessageDeflate(agreement, self._deflate_options, client=True)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(
                InvalidHandshake("connection closed during the opening handshake")
            )
        super().connection_lost(exc)


class connect:
    """Open a WebSocket connection: `await connect(url)` or `async with connect(url) as ws`."""

    def __init__(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        ssl: _ssl.SSLContext | bool | None = None,
        open_timeout: float | None = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_queue: int = 16,
        write_limit: int = 64 * 1024,
        close_timeout: float = 10.0,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        local_addr: tuple[str, int] | None = None,
        compression: str | DeflateOptions | None = None,
    ) -> None:
        if compression == "deflate":
            compression = DeflateOptions()
        elif compression is not None and not isinstance(compression, DeflateOptions):
            raise ValueError(
                f"compression must be 'deflate', DeflateOptions or None: {compression!r}"
            )
        self.compression = compression
        self.url = url
        self.subprotocols = tuple(subprotocols)
        self.headers = tuple(headers)
        self.ssl = ssl
        self.open_timeout = open_timeout
        self.local_addr = local_addr
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
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"not a WebSocket URL: {self.url!r}")
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = port == (443 if secure else 80)
        host_header = host if ":" not in host else f"[{host}]"
        if not default_port:
            host_header = f"{host_header}:{port}"
        key = generate_key()
        offer = client_offer(self.compression) if self.compression is not None else None
        request = client_request(host_header, path, key, self.subprotocols, offer, self.headers)
        ssl_context = self.ssl
        if secure and ssl_context is None:
            ssl_context = True
        loop = asyncio.get_running_loop()
        transport, ws = await loop.create_connection(
            lambda: ClientProtocol(
                request, key, self.subprotocols, self.compression, **self.options
            ),
            host,
            port,
            ssl=ssl_context or None,
            local_addr=self.local_addr,
        )
        try:
            await ws._handshake
        except BaseException:
            transport.abort()
            raise
        ws.request = None
        return ws

    async def _open(self) -> ClientProtocol:
        if self.open_timeout is None:
            return await self._connect()
        return await asyncio.wait_for(self._connect(), self.open_timeout)

    def __await__(self) -> Generator[Any, None, ClientProtocol]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientProtocol:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._ws is not None
        await self._ws.close()
