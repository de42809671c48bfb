"""fastws.protocol.pings: which waiters a pong answers (RFC 6455 5.5.3), shared by both
clients' ping() and the server's keepalive bookkeeping."""

from __future__ import annotations

import pytest

from fastws.protocol.pings import PingTracker


def test_pong_answers_its_ping_with_round_trip() -> None:
    """A pong with a waiting ping's payload answers it, with now - sent as the round trip."""
    pings: PingTracker[str] = PingTracker()
    pings.add(b"a", "waiter-a", sent=10.0)
    assert b"a" in pings and len(pings) == 1
    assert pings.pong(b"a", now=10.25) == [("waiter-a", 0.25)]
    assert len(pings) == 0


def test_pong_answers_earlier_pings_too() -> None:
    """5.5.3: a peer may answer only the latest ping, so a pong also answers every ping sent
    before its own, and none sent after it."""
    pings: PingTracker[str] = PingTracker()
    pings.add(b"1", "first", sent=1.0)
    pings.add(b"2", "second", sent=2.0)
    pings.add(b"3", "third", sent=3.0)
    answered = pings.pong(b"2", now=4.0)
    assert sorted(answered) == [("first", 3.0), ("second", 2.0)]
    assert b"3" in pings and len(pings) == 1


def test_unsolicited_pong_answers_nothing() -> None:
    """5.5.3: "A response to an unsolicited Pong frame is not expected"."""
    pings: PingTracker[str] = PingTracker()
    pings.add(b"x", "w", sent=0.0)
    assert pings.pong(b"other", now=1.0) == []
    assert len(pings) == 1


def test_same_payload_twice_refused_and_discard_and_clear() -> None:
    """Pongs are matched by payload, so two waiting pings may not share one; discard forgets
    one (its waiter gave up) and clear hands back every waiter (the connection closed)."""
    pings: PingTracker[str] = PingTracker()
    pings.add(b"p", "w1", sent=0.0)
    with pytest.raises(ValueError, match="already waiting"):
        pings.add(b"p", "w2", sent=1.0)
    pings.add(b"q", "w3", sent=1.0)
    pings.discard(b"p")
    pings.discard(b"never-sent")
    assert pings.clear() == ["w3"]
    assert len(pings) == 0
