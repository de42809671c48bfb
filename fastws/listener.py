"""Callback-style handlers: plain methods called from the event loop as a connection's events
arrive, for the applications that want the last microsecond per message.

The coroutine handler (`async def handler(ws)`) stays the first choice: it reads like the
protocol it speaks. Its cost is one task per connection and one task wake-up per message
(a Future resolved, a loop iteration, three coroutine frames resumed). A `Listener` has
neither: `on_message` is called straight from the read that completed the message, and
`ws.send_nowait()` queues the answer at once; the answers to all messages of one read leave
in one write. An idle connection with a listener holds no task and no coroutine.

    class Echo(fastws.Listener):
        def on_message(self, ws, message):
            ws.send_nowait(message)

    fastws.run(Echo(), port=8000)        # or: fastws serve myapp:Echo

One listener object serves every connection of a worker; state per connection goes on the
connection (`ws.context.user = ...`). Callbacks must not block: anything slow belongs in a task the
callback starts (`asyncio.get_running_loop().create_task(...)`), which may use the coroutine
API (`await ws.send(...)`) on the same connection.

Backpressure: while the peer does not read what was sent (`ws.writing_paused`), a server
stops reading from it, so `on_message` is not called until it catches up.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .message import Message
    from .server.protocol import ServerConnection

__all__ = ["Listener", "as_listener"]


class Listener:
    """Subclass and override `on_message` (and `on_open` / `on_close` if needed).

    `on_message(ws, message)` gets text as `str` and binary as a `Message` (a zero-copy view,
    the same at every size; release it or let it go). An exception in a callback is logged
    and closes the connection with 1011, as an exception in a coroutine handler does.
    """

    def on_open(self, ws: ServerConnection) -> None:
        """The opening handshake is done; messages may be sent from here on."""

    def on_message(self, ws: ServerConnection, message: str | Message) -> None:
        raise NotImplementedError

    def on_close(self, ws: ServerConnection, code: int, reason: str) -> None:
        """The connection is closed (`code` 1006: without a closing handshake). Called once
        for every connection `on_open` was called for; nothing can be sent any more."""


def as_listener(app: Any) -> Listener | None:
    """The callback-style handler `app` stands for, or None for a coroutine handler.

    A `Listener` instance is used as it is; a class with a (non-async) `on_message` is
    instantiated once, without arguments. Anything else with such an `on_message` serves too
    (missing `on_open` / `on_close` do nothing).
    """
    if isinstance(app, Listener):
        return app
    on_message = getattr(app, "on_message", None)
    if on_message is None or inspect.iscoroutinefunction(on_message):
        return None
    if isinstance(app, type):
        app = app()
    if isinstance(app, Listener):
        return app
    return _Adapter(app)


class _Adapter(Listener):
    """A duck-typed listener: only the callbacks it defines."""

    def __init__(self, app: Any) -> None:
        # Instance attributes shadow the base class's methods: each call goes straight to
        # the application's (or to nothing).
        for name in ("on_open", "on_message", "on_close"):
            setattr(self, name, getattr(app, name, _nothing))


def _nothing(*args: Any) -> None:
    pass
