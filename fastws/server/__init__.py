"""The asyncio/uvloop server: one `ServerProtocol` per connection, a `Server` per listener."""

from .protocol import ServerProtocol
from .server import Server, new_event_loop, run_single, serve

__all__ = ["Server", "ServerProtocol", "new_event_loop", "run_single", "serve"]
