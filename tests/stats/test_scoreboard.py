"""The scoreboard page the master and its workers share (fastws.stats.scoreboard): slots are
claimed and freed by the master, each worker writes only its own, and what an exited worker
counted is kept (in the server's totals and in its worker slot) so counters never go back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from fastws.stats import counters
from fastws.stats.scoreboard import BOOTING, FREE, READY, Scoreboard


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    saved = list(counters.values)
    board = Scoreboard(4)
    yield board
    board.close()
    counters.values[:] = saved


def publish(board: Scoreboard, slot: int, messages_in: int, open_now: int) -> None:
    counters.reset()
    counters.values[counters.MESSAGES_IN] = messages_in
    counters.values[counters.CONNECTIONS_OPEN] = open_now
    board.beat(slot, READY)


def test_claim_gives_distinct_slots_until_full(board: Scoreboard) -> None:
    """Slots 1..N go to workers (slot 0 is the master's); a full board refuses, and a retired
    slot can be claimed again."""
    slots = [board.claim(listener=i) for i in range(4)]
    assert sorted(slots) == [1, 2, 3, 4]
    assert all(board.read(s).state == BOOTING for s in slots)
    with pytest.raises(RuntimeError, match="all 4 scoreboard slots are in use"):
        board.claim(listener=0)
    board.retire(slots[0])
    assert board.read(slots[0]).state == FREE
    assert board.claim(listener=0) == slots[0]


def test_a_beat_publishes_this_process_counters_and_heartbeat(board: Scoreboard) -> None:
    slot = board.claim(listener=0)
    board.set_pid(slot, os.getpid())
    publish(board, slot, messages_in=5, open_now=2)
    view = board.read(slot)
    assert (view.pid, view.state_name) == (os.getpid(), "ready")
    assert view.values[counters.MESSAGES_IN] == 5
    assert view.heartbeat > 0
    assert [w.slot for w in board.workers()] == [slot]


def test_an_exited_worker_counts_stay_but_its_gauges_do_not(board: Scoreboard) -> None:
    """Retiring a worker keeps its cumulative counts in the totals and in its worker slot's
    retired record; its gauges (connections open) were about a process that is gone."""
    first = board.claim(listener=1)
    publish(board, first, messages_in=5, open_now=2)
    board.fail(first, "crashed: boom")
    assert board.read(first).message == "crashed: boom"
    board.retire(first)
    assert board.totals()[counters.MESSAGES_IN] == 5
    assert board.totals()[counters.CONNECTIONS_OPEN] == 0
    assert board.retired(1)[counters.MESSAGES_IN] == 5
    assert board.retired(0)[counters.MESSAGES_IN] == 0
    second = board.claim(listener=1)
    publish(board, second, messages_in=3, open_now=1)
    assert board.totals()[counters.MESSAGES_IN] == 8
    assert board.totals()[counters.CONNECTIONS_OPEN] == 1


def test_close_codes_are_counted_by_code_and_other(board: Scoreboard) -> None:
    """RFC 6455 7.4.1's codes each have a counter; any other code lands in "other"."""
    assert counters.close_index(1000) != counters.close_index(1011)
    assert counters.close_index(4000) == counters.close_index(3999) == counters.CLOSE_OTHER


def test_a_reader_never_sees_a_beating_worker_half_written(board: Scoreboard) -> None:
    """Issue 21: workers serving thousands of connections were killed minutes after
    worker_timeout "without a heartbeat since they booted". struct.pack_into zeroes its target
    before it packs, so the master, reading while a worker beat, could find the heartbeat at
    0.0 (counted from the fork instead) or the state FREE. While another process beats as
    fast as it can, every read shows the worker's real pid, state, counters and a heartbeat."""
    slot = board.claim(listener=0)
    publish(board, slot, messages_in=7, open_now=3)
    board.set_pid(slot, 4242)
    child = os.fork()
    if child == 0:  # the worker: beat, state and pid rewritten in a tight loop
        try:
            for _ in range(200_000):
                board.beat(slot, READY)
                board.set_pid(slot, 4242)
        finally:
            os._exit(0)
    seen = set()
    try:
        while os.waitpid(child, os.WNOHANG) == (0, 0):
            view = board.read(slot)
            seen.add(
                (
                    view.pid,
                    view.state,
                    view.heartbeat > 0,
                    view.values[counters.MESSAGES_IN],
                    view.values[counters.CONNECTIONS_OPEN],
                )
            )
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    assert seen == {(4242, READY, True, 7, 3)}
