"""The master's decisions, one verb at a time, with fork, waitpid, kill and the clock faked
(the way gunicorn tests its arbiter): which worker it forks, reaps, replaces, stops or kills
for each signal and each way a worker ends. The scoreboard is the real shared page; no
process is forked and no socket is opened. test_arbiter.py runs the same master for real.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fastws.config import Config
from fastws.process import arbiter as arbiter_module
from fastws.process.arbiter import KILL_MARGIN, Arbiter
from fastws.process.worker import WORKER_BOOT_ERROR
from fastws.stats import scoreboard as scoreboard_module
from fastws.stats.scoreboard import READY, Scoreboard


def exited(code: int) -> int:
    """A wait status: exited with `code`."""
    return code << 8


def killed(sig: int) -> int:
    """A wait status: killed by `sig`."""
    return sig


@dataclass
class FakeListeners:
    """Stands in for the listening sockets: records what the master asks of them."""

    slots: int = 0
    closed: bool = False
    calls: list[tuple[str, int]] = field(default_factory=list)

    def for_slot(self, index: int) -> Any:
        return f"socket {index}"

    def others(self, index: int) -> list[Any]:
        return []

    def ensure(self, slots: int) -> None:
        self.calls.append(("ensure", slots))

    def shrink(self, slots: int) -> None:
        self.calls.append(("shrink", slots))

    def close(self) -> None:
        self.closed = True


class FakeOS:
    """fork, waitpid and kill, as the master sees them."""

    def __init__(self) -> None:
        self.next_pid = 1000
        self.forked: list[int] = []
        self.killed: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []  # what waitpid(-1, WNOHANG) returns next

    def fork(self) -> int:
        self.next_pid += 1
        self.forked.append(self.next_pid)
        return self.next_pid

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert (pid, options) == (-1, os.WNOHANG)
        return self.exits.pop(0) if self.exits else (0, 0)

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append((pid, sig))

    def signals_to(self, pid: int) -> list[int]:
        return [sig for p, sig in self.killed if p == pid]


class FakeTime:
    """The master's and the scoreboard's clock: moves only when told."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


@pytest.fixture
def fake_os(monkeypatch: pytest.MonkeyPatch) -> FakeOS:
    fake = FakeOS()
    monkeypatch.setattr(os, "fork", fake.fork)
    monkeypatch.setattr(os, "waitpid", fake.waitpid)
    monkeypatch.setattr(os, "kill", fake.kill)
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """One fake clock for the master and the scoreboard (whose beats it compares)."""
    fake = FakeTime()
    monkeypatch.setattr(arbiter_module, "time", fake)
    monkeypatch.setattr(scoreboard_module, "time", fake)
    return fake


@pytest.fixture
def master(fake_os: FakeOS, clock: FakeTime) -> Iterator[Arbiter]:
    """A master of two workers, its scoreboard real, its sockets fake, no signals installed."""
    config = Config(workers=2, worker_timeout=30, graceful_timeout=10)
    arb = Arbiter("tests.process.apps:report_pid", lambda ws: None, config)
    arb.listeners = FakeListeners()  # type: ignore[assignment]
    arb.scoreboard = Scoreboard(8)
    yield arb
    arb.scoreboard.close()


def serving(arb: Arbiter, pid: int) -> None:
    """What a booted worker does: beat READY in its slot; the master notices on its tick."""
    assert arb.scoreboard is not None
    worker = arb.workers[pid]
    arb.scoreboard.beat(worker.slot, READY)
    arb.murder_workers()
    assert worker.ready


def started(arb: Arbiter, fake_os: FakeOS) -> list[int]:
    """Fork the initial workers and have them all serve."""
    arb.manage_workers()
    pids = list(fake_os.forked)
    for pid in pids:
        serving(arb, pid)
    return pids


def test_one_worker_per_slot_each_in_its_own_scoreboard_slot(
    master: Arbiter, fake_os: FakeOS
) -> None:
    """manage_workers forks a worker for every worker slot that has none, and only those."""
    master.manage_workers()
    assert len(fake_os.forked) == 2
    assert sorted(w.listener for w in master.workers.values()) == [0, 1]
    assert len({w.slot for w in master.workers.values()}) == 2
    master.manage_workers()
    assert len(fake_os.forked) == 2  # every slot covered: nothing more


def test_a_crashed_worker_is_reaped_and_its_slot_refilled(master: Arbiter, fake_os: FakeOS) -> None:
    """A worker killed by a signal is reaped (its scoreboard slot freed) and the next tick
    forks a replacement for the same worker slot; the other worker is left alone."""
    first, _ = started(master, fake_os)
    listener = master.workers[first].listener
    fake_os.exits.append((first, killed(signal.SIGKILL)))
    master.reap_workers()
    assert first not in master.workers
    master.manage_workers()
    [replacement] = fake_os.forked[2:]
    assert master.workers[replacement].listener == listener
    assert fake_os.killed == []  # the sibling was not touched


def test_workers_that_keep_dying_young_are_restarted_with_back_off(
    master: Arbiter, fake_os: FakeOS, clock: FakeTime
) -> None:
    """Two failed starts in a row on one slot: the next fork waits (0.2 s, then doubling),
    so a crashing application does not become a fork loop."""
    started(master, fake_os)
    for _ in range(2):
        pid = next(p for p, w in master.workers.items() if w.listener == 0)
        fake_os.exits.append((pid, exited(1)))  # dies at once (young)
        master.reap_workers()
        master.manage_workers()
    forked = len(fake_os.forked)
    assert forked == 3  # the first failure is replaced at once, the second is not yet
    clock.now += 0.25
    master.manage_workers()
    assert len(fake_os.forked) == forked + 1


def test_no_worker_can_boot_the_master_stops_with_status_3(
    master: Arbiter, fake_os: FakeOS
) -> None:
    """The first workers fail to boot (exit 3): the master stops, telling the others to stop,
    and its own exit status is 3 instead of respawning for ever."""
    master.manage_workers()
    first, second = fake_os.forked
    fake_os.exits.append((first, exited(WORKER_BOOT_ERROR)))
    master.reap_workers()
    assert master.exit_status == WORKER_BOOT_ERROR
    assert fake_os.signals_to(second) == [signal.SIGTERM]
    assert master.stopping  # the main loop forks nothing more and exits when both are reaped


@pytest.mark.parametrize(
    ("signum", "sent"),
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGTERM),
        (signal.SIGQUIT, signal.SIGQUIT),
    ],
)
def test_stop_signals_reach_every_worker_and_close_the_sockets(
    master: Arbiter, fake_os: FakeOS, signum: int, sent: int
) -> None:
    """TERM and INT: graceful (workers get TERM and close 1001); QUIT: immediate (QUIT).
    Either way the listening sockets close, so the kernel queues nothing nobody accepts."""
    pids = started(master, fake_os)
    master.dispatch(signum)
    assert sorted(pid for pid, _ in fake_os.killed) == sorted(pids)
    assert {sig for _, sig in fake_os.killed} == {sent}
    assert master.listeners.closed  # type: ignore[attr-defined]


def test_a_worker_that_does_not_stop_in_time_is_killed(
    master: Arbiter, fake_os: FakeOS, clock: FakeTime
) -> None:
    """After TERM, a worker still alive past graceful_timeout (+ a margin) gets SIGKILL."""
    pids = started(master, fake_os)
    master.dispatch(signal.SIGTERM)
    clock.now += master.config.graceful_timeout + KILL_MARGIN - 0.5
    master.kill_overdue()
    assert all(sig == signal.SIGTERM for _, sig in fake_os.killed)
    clock.now += 1.0
    master.kill_overdue()
    assert {pid for pid, sig in fake_os.killed if sig == signal.SIGKILL} == set(pids)


def test_a_worker_whose_heartbeat_stops_is_killed(
    master: Arbiter, fake_os: FakeOS, clock: FakeTime
) -> None:
    """worker_timeout without a heartbeat (its event loop is blocked): SIGKILL, to that
    worker only, at the master's second look (the next tick); its sibling, which kept
    beating, is left alone."""
    assert master.scoreboard is not None and master.config.worker_timeout is not None
    stuck, beating = started(master, fake_os)
    clock.now += master.config.worker_timeout + 1
    master.scoreboard.beat(master.workers[beating].slot, READY)
    master.murder_workers()
    assert fake_os.killed == []
    clock.now += 0.25
    master.murder_workers()
    assert fake_os.killed == [(stuck, signal.SIGKILL)]


def test_one_stale_look_at_a_beating_worker_does_not_kill_it(
    master: Arbiter, fake_os: FakeOS, clock: FakeTime
) -> None:
    """Issue 21: workers were killed for a heartbeat the master read as older than
    worker_timeout although they served thousands of connections. A worker found overdue
    once but beating at the next look keeps running, and the next time it is overdue it
    again gets that second look."""
    assert master.scoreboard is not None and master.config.worker_timeout is not None
    pids = started(master, fake_os)
    clock.now += master.config.worker_timeout + 1
    master.murder_workers()  # both overdue at this look
    for pid in pids:
        master.scoreboard.beat(master.workers[pid].slot, READY)
    clock.now += 0.25
    master.murder_workers()
    clock.now += master.config.worker_timeout + 1
    master.murder_workers()
    assert fake_os.killed == []


def test_hup_replaces_each_worker_once_its_successor_serves(
    master: Arbiter, fake_os: FakeOS
) -> None:
    """HUP: a new generation of workers is forked; an old worker is told to stop only once
    the new worker of its slot serves, so no slot is ever left without one."""
    old = started(master, fake_os)
    master.dispatch(signal.SIGHUP)
    new = fake_os.forked[2:]
    assert len(new) == 2 and master.reloading
    by_slot = {master.workers[pid].listener: pid for pid in old}
    first_new = new[0]
    serving(master, first_new)
    master.check_reload()
    replaced = by_slot[master.workers[first_new].listener]
    assert fake_os.killed == [(replaced, signal.SIGTERM)]
    serving(master, new[1])
    master.check_reload()
    assert sorted(pid for pid, _ in fake_os.killed) == sorted(old)
    assert not master.reloading


def test_a_reload_whose_workers_cannot_boot_keeps_the_old_workers(
    master: Arbiter, fake_os: FakeOS
) -> None:
    """HUP with broken new code: the first new worker exits 3; the reload is abandoned, the
    other new worker is told to stop, and the old workers are never signalled."""
    old = started(master, fake_os)
    master.dispatch(signal.SIGHUP)
    broken, sibling = fake_os.forked[2:]
    fake_os.exits.append((broken, exited(WORKER_BOOT_ERROR)))
    master.reap_workers()
    assert not master.reloading
    assert fake_os.killed == [(sibling, signal.SIGTERM)]
    assert all(pid in master.workers for pid in old)
    assert master.exit_status == 0  # the server carries on


def test_ttin_adds_a_worker_and_ttou_removes_the_last_slot(
    master: Arbiter, fake_os: FakeOS
) -> None:
    """TTIN: one worker slot more (its socket made, a worker forked); TTOU: the highest slot's
    worker is stopped gracefully and its socket closed."""
    started(master, fake_os)
    master.dispatch(signal.SIGTTIN)
    master.manage_workers()
    assert master.num_workers == 3
    [third] = fake_os.forked[2:]
    assert master.workers[third].listener == 2
    master.dispatch(signal.SIGTTOU)
    assert fake_os.killed == [(third, signal.SIGTERM)]
    assert master.listeners.calls == [("ensure", 3), ("shrink", 2)]  # type: ignore[attr-defined]
