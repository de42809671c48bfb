"""The broker the `broker` option names, made for one worker.

Apart from `broker.py` (the interface both implementations import), so that the interface
does not import its own implementations: the arrows go factory -> ring/redis -> broker.
"""

from __future__ import annotations

from .broker import Broker
from .ring import LocalBroker, Ring

__all__ = ["make_broker"]


def make_broker(url: str, *, ring: Ring | None = None, slot: int = 0) -> Broker:
    """ "local" (the host's shared ring, or this process alone without one) or a redis:// /
    rediss:// / unix:// URL (the Redis broker, imported only when used: an optional extra)."""
    if url == "local":
        return LocalBroker(ring, slot)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBroker  # type: ignore[import-not-found,unused-ignore]

        broker: Broker = RedisBroker(url)
        return broker
    raise ValueError(f"unknown broker {url!r}: expected 'local' or a redis:// URL")
