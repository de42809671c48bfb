"""The application's say in the opening handshake, as `websockets` users know it.

- ``process_request(ws, request)``: called for every HTTP request on the port, an upgrade
  or not (/healthz, /metrics and the dashboard too, when they share the port). Returning a
  `Response` sends it instead of what would follow (a route's answer, the upgrade); None goes
  on. `ws` is the connection: `ws.remote_address`, and a place for what the hook learned
  (``ws.user = ...``) that the handler then finds on the same object.
  A hook written for the older form ``process_request(request)`` still works.
- ``process_response(ws, request, response)``: sees the 101 before it is sent; it may change
  ``response.headers`` in place (cookies, a server name) or return another `Response` (a
  status other than 101 refuses the upgrade).
- ``select_subprotocol(ws, offered)``: picks the subprotocol from the client's offer (a
  list, in the client's order), or None for none; instead of the fixed `subprotocols` list.
- Path routing: a handler given as a mapping ``{"/chat": chat, "/feed": feed}`` serves
  each path with its handler; an upgrade to any other path gets 404.

Any of the three hooks may be a coroutine function. An exception in one is logged and the
client gets 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..config import Config
from .app import _positional  # the interface detection's parameter count

__all__ = ["Hooks", "split_paths"]

Hook = Callable[..., Any]


def _request_hook(hook: Hook | None) -> Hook | None:
    """`hook` called as hook(ws, request), whichever of the two forms it was written in."""
    if hook is None or _positional(hook) != 1:  # required positional parameters
        return hook

    def legacy(ws: Any, request: Any) -> Any:
        return hook(request)

    return legacy


async def _not_routed(ws: Any) -> None:  # pragma: no cover - unknown paths get 404 first
    raise RuntimeError("no handler for this path")


def split_paths(handler: Any) -> tuple[Any, dict[str, Any] | None]:
    """(the application handler, the path table): a mapping of paths to handlers is served
    by path (and its application handler never runs); anything else is the one handler."""
    if not isinstance(handler, Mapping):
        return handler, None
    paths = dict(handler)
    for path, each in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path {path!r} of the handler table must start with '/'")
        if not callable(each):
            raise ValueError(f"the handler for {path!r} is not callable")
    return _not_routed, paths


class Hooks:
    """The configured hooks in the form the connection calls them (see the module doc)."""

    __slots__ = ("paths", "request", "response", "subprotocol")

    def __init__(
        self,
        request: Hook | None = None,
        response: Hook | None = None,
        subprotocol: Hook | None = None,
        paths: frozenset[str] | None = None,
    ) -> None:
        self.request = _request_hook(request)
        self.response = response
        self.subprotocol = subprotocol
        #: The paths a handler table serves (None: one handler for every path).
        self.paths = paths

    @classmethod
    def from_config(cls, config: Config, paths: Mapping[str, Any] | None = None) -> Hooks:
        return cls(
            config.process_request,
            config.process_response,
            config.select_subprotocol,
            frozenset(paths) if paths is not None else None,
        )
