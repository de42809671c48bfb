"""The built-in echo server, run by ``fastws serve`` when no APP is given."""

from collections.abc import AsyncIterator
from typing import Protocol


class _Socket(Protocol):
    """What echo needs from a connection; fastws.WebSocket provides it."""

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def send(self, message: str | bytes, /) -> None: ...


async def echo(ws: _Socket) -> None:
    """Send every message back as it came: text as text, binary as binary.

    Handy to smoke-test a deployment and as a benchmark target, since the
    handler itself costs next to nothing.
    """
    async for message in ws:
        await ws.send(message)
