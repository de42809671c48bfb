"""The seam between channels (rooms) in one worker and the transport that carries publishes.

A `Broker` carries every `publish(channel, payload)` made in any worker (or, with Redis, on
any host) to every worker that has subscribers on that channel, and hands it to that
worker's `deliver` callback. Two implementations: `local` (a shared-memory ring created by
the master before fork: all workers of one host, no broker process) and `redis` (Redis
pub/sub: many hosts); `fastws.pubsub.factory` picks one. The hub (`fastws.pubsub.hub`) owns the channel → connections map and
calls `subscribe`/`unsubscribe` when a worker gains its first / loses its last subscriber.

Every publish is delivered to every worker with subscribers on its channel, the publishing
worker included (its own subscribers get it through `deliver` too, as Redis echoes a
publish to the publisher's own subscription): the hub delivers nothing by itself, so each
subscriber gets each message exactly once, in the same order as every other subscriber of
the same publisher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Broker", "Deliver", "Lost", "PublishError"]

#: deliver(channel, payload, text): run on the worker's event loop, once per message, in
#: publish order per publisher. `payload` is only valid during the call (it may be a view
#: into a shared ring): a deliverer that keeps it must copy it.
Deliver = Callable[[str, memoryview, bool], None]

#: lost(channel): messages on `channel` (None: on any channel) may not have reached this
#: worker (it fell behind the shared ring; the connection to Redis was lost). Run on the
#: worker's event loop. The hub closes the affected subscribers with 1013 (Try Again Later) so
#: that no client silently misses messages; they reconnect and resynchronise.
Lost = Callable[[str | None], None]


class PublishError(Exception):
    """A publish could not be handed to the broker (e.g. Redis is down): it was not sent."""


class Broker(Protocol):
    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        """Begin delivering messages published on subscribed channels to `deliver`; call
        `lost` when messages may have been missed (the hub always passes it)."""

    async def publish(self, channel: str, payload: bytes | memoryview, text: bool) -> None:
        """Send to every subscriber of `channel` in every worker; raise `PublishError` if not."""

    def subscribe(self, channel: str) -> None:
        """This worker now has subscribers on `channel` (may be a no-op)."""

    def unsubscribe(self, channel: str) -> None:
        """This worker no longer has subscribers on `channel` (may be a no-op)."""

    async def close(self) -> None:
        """Stop delivering and release the broker's resources."""
