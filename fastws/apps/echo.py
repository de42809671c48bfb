"""The built-in echo server, run by ``fastws serve`` when no APP is given.

`Echo` (the default) is a callback-style `Listener`, the fastest path: each message is
answered from the read that completed it, with no task or wake-up per message. `echo` is the
same server as a coroutine handler, the form most applications use.
"""

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..listener import Listener


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


class Echo(Listener):
    """Send every message back as it came: text as text, binary as binary, at once."""

    def on_message(self, ws: Any, message: Any) -> None:
        # A Message is released once handed to the transport (see echo above).
        ws.send_nowait(message, release=True)
