"""Pings waiting for their pong, sans I/O: which waiters a received pong answers, and after
how long. The I/O layer keeps its own kind of waiter (an asyncio future, a threading event)
and passes the clock in.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["PingTracker"]

W = TypeVar("W")


class PingTracker(Generic[W]):
    """Outstanding pings by payload, each with its waiter and the time it was sent."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[bytes, tuple[W, float]] = {}

    def add(self, payload: bytes, waiter: W, sent: float) -> None:
        """Record a ping about to go out. Payloads must differ while they wait: a pong is
        matched to its ping by payload alone."""
        if payload in self._waiting:
            raise ValueError("a ping with this payload is already waiting for its pong")
        self._waiting[payload] = (waiter, sent)

    def discard(self, payload: bytes) -> None:
        """Forget a ping (its waiter gave up)."""
        self._waiting.pop(payload, None)

    def pong(self, payload: bytes, now: float) -> list[tuple[W, float]]:
        """The waiters a pong with `payload` answers, each with its round trip in seconds.

        RFC 6455 5.5.3: a pong answers its ping; an endpoint "MAY elect to send a Pong frame
        for only the most recently processed Ping frame", so it answers the earlier pings too.
        "A response to an unsolicited Pong frame is not expected": no match, no waiter.
        """
        entry = self._waiting.pop(payload, None)
        if entry is None:
            return []
        sent = entry[1]
        answered = [(entry[0], now - sent)]
        for key, (other, other_sent) in list(self._waiting.items()):
            if other_sent <= sent:
                del self._waiting[key]
                answered.append((other, now - other_sent))
        return answered

    def clear(self) -> list[W]:
        """Every waiter still waiting (the connection closed: none will get its pong)."""
        waiters = [waiter for waiter, _ in self._waiting.values()]
        self._waiting.clear()
        return waiters

    def __contains__(self, payload: object) -> bool:
        return payload in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)
