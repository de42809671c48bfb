"""The built-in echo server, run by ``fastws serve`` when no APP is given."""

from collections.abc import AsyncIterator
from typing import Any, Protocol


class _Socket(Protocol):
    """What echo needs from a connection; fastws.WebSocket provides it."""

    def messages(self) -> AsyncIterator[Any]: ...

    async def send(self, message: Any, /, *, release: bool = False) -> None: ...


async def echo(ws: _Socket) -> None:
    """Send every message back as it came: text as text, binary as binary.

    Binary messages are echoed from the memory they were received into (`messages()` gives
    zero-copy `Message`s), so this is also the large-message benchmark target. The handler
    itself costs next to nothing.
    """
    async for message in ws.messages():
        # A Message is released once handed to the transport (its pages are reused when the
        # transport has written them): the next message finds its memory, not a second copy.
        await ws.send(message, release=True)
