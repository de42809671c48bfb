"""The built-in echo server, run by ``fastws serve`` when no APP is given."""

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..message import Message


class _Socket(Protocol):
    """What echo needs from a connection; fastws.WebSocket provides it."""

    def messages(self) -> AsyncIterator[Any]: ...

    async def send(self, message: Any, /) -> None: ...


async def echo(ws: _Socket) -> None:
    """Send every message back as it came: text as text, binary as binary.

    Binary messages are echoed from the memory they were received into (`messages()` gives
    zero-copy `Message`s), so this is also the large-message benchmark target. The handler
    itself costs next to nothing.
    """
    async for message in ws.messages():
        await ws.send(message)
        if isinstance(message, Message):
            # Unmap it now if it went out already (else when the transport lets go): the
            # next message must not find this one still holding its memory.
            message.release()
