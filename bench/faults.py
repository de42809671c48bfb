"""Faults under continuous load, counted: kill -9 a worker, SIGSTOP a worker, HUP reload.

    python -m bench.faults --connections 400 --workers 2 --duration 10    # every scenario
    python -m bench.faults --scenarios kill --workers 4 --json            # one, JSON only

Every connection (the `websockets` library, one asyncio client process) echoes continuously,
`--window` numbered messages in flight. Each echo is compared with what was sent, so a message
lost (a later one came back first, or none came back while the connection stayed open) or
corrupted is counted, per connection and per worker. A connection that drops reconnects at
once; every connection attempt and every failed handshake is counted too.

- kill: `kill -9` one worker under load. The other workers' connections must lose nothing;
  the victim's see the connection end (never a hang: `--hang` seconds without an echo counts
  as hung) and reconnect.
- stop: `SIGSTOP` one worker. Its connections stall, the others go on; after worker_timeout
  the master kills it (SIGKILL ends a stopped process) and a new worker takes its slot.
- hup: `SIGHUP` under load, plus `--churn` clients that connect, echo 3 times and close in a
  loop. Zero failed handshakes; the old workers close their connections with 1001 (a message
  in flight then gets no echo: "unanswered", as the client cannot know whether it was
  processed), and no connection loses a message while it is open.

The server is `fastws serve bench.faults:pid_echo` (greets with its worker's pid, then echoes)
started here, or `--url` + `--pid` for one already running the same app (e.g. the test suite's
`tests.process.apps:report_pid`). Exit status 1 if anything was lost, corrupted, hung or
refused where the scenario promises it is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from bench.procs import children, raise_fd_limit, terminate


async def pid_echo(ws: Any) -> None:
    """The application under test: its worker's pid first, then every message back."""
    await ws.send(str(os.getpid()))
    async for message in ws:
        await ws.send(message)


def workers_of(master: int) -> set[int]:
    """Live child processes of the master (its workers), from /proc."""
    return children(master)


# -- the load ---------------------------------------------------------------------------------


@dataclass
class Session:
    """One connection from its handshake to its end."""

    conn: int  # which of the load's connections (it reconnects under the same number)
    worker: int  # pid that greeted it
    opened: float
    sent: int = 0
    echoed: int = 0
    lost: int = 0  # sent, never echoed, while the connection stayed open
    corrupted: int = 0  # an echo that matches nothing sent
    unanswered: int = 0  # in flight when the server closed the connection
    close_code: int | None = None  # 1006: ended without a Close frame; None: open or hung
    hung: bool = False  # no echo for `hang` seconds while the connection was open
    ended: float | None = None
    last_echo: float = 0.0
    max_gap: float = 0.0  # longest wait for an echo


@dataclass
class Load:
    """`connections` clients echoing continuously against `url`."""

    url: str
    connections: int
    window: int = 1
    size: int = 64
    hang: float = 10.0
    sessions: list[Session] = field(default_factory=list)
    attempts: int = 0
    failures: list[str] = field(default_factory=list)  # failed handshakes, with the reason
    churned: int = 0  # short connections completed by churn clients
    _stop: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, churn: int = 0) -> None:
        self._stop = False
        self._tasks = [asyncio.create_task(self._connection(i)) for i in range(self.connections)]
        self._tasks += [asyncio.create_task(self._churn()) for _ in range(churn)]

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)

    def echoed(self) -> int:
        return sum(s.echoed for s in self.sessions)

    def by_worker(self, when: float) -> dict[int, list[Session]]:
        """Sessions open at `when`, by worker pid."""
        out: dict[int, list[Session]] = {}
        for s in self.sessions:
            if s.opened <= when and (s.ended is None or s.ended > when):
                out.setdefault(s.worker, []).append(s)
        return out

    async def established(self, timeout: float = 30.0) -> None:
        """Wait until every connection has had at least one echo."""
        deadline = time.monotonic() + timeout
        while True:
            open_ = {s.conn for s in self.sessions if s.ended is None and s.echoed}
            if len(open_) == self.connections:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(open_)} of {self.connections} connections echo")
            await asyncio.sleep(0.05)

    async def _open(self) -> tuple[Any, int] | None:
        self.attempts += 1
        try:
            ws = await websockets.connect(
                self.url,
                open_timeout=self.hang,
                ping_interval=None,
                close_timeout=2,
                compression=None,
                max_size=None,
            )
        except Exception as exc:  # refused, reset, timed out, or an HTTP error status
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return None
        try:
            return ws, int(await asyncio.wait_for(ws.recv(), self.hang))
        except ConnectionClosed as exc:
            # Accepted by an old worker an instant before it stopped: a completed handshake,
            # then "going away". Not a failed handshake; the client simply reconnects.
            if exc.rcvd is None or exc.rcvd.code != 1001:
                self.failures.append(f"closed before the greeting: {exc}")
        except (TimeoutError, ValueError) as exc:
            self.failures.append(f"no greeting: {exc!r}")
        ws.transport.abort()
        return None

    async def _connection(self, conn: int) -> None:
        while not self._stop:
            opened = await self._open()
            if opened is None:
                await asyncio.sleep(0.05)
                continue
            ws, pid = opened
            session = Session(conn, pid, time.monotonic())
            self.sessions.append(session)
            await self._echo(ws, session)

    async def _echo(self, ws: Any, session: Session) -> None:
        outstanding: deque[str] = deque()
        seq = 0
        prefix = f"{session.conn}.{len(self.sessions)}."
        session.last_echo = time.monotonic()
        try:
            while True:
                if self._stop and not outstanding:
                    break
                while not self._stop and len(outstanding) < self.window:
                    message = (prefix + str(seq)).ljust(self.size, "x")
                    seq += 1
                    await ws.send(message)
                    outstanding.append(message)
                    session.sent += 1
                try:
                    reply = await asyncio.wait_for(ws.recv(), self.hang)
                except TimeoutError:
                    session.hung = True
                    session.lost += len(outstanding)
                    ws.transport.abort()
                    return
                now = time.monotonic()
                session.max_gap = max(session.max_gap, now - session.last_echo)
                session.last_echo = now
                if reply == outstanding[0]:
                    outstanding.popleft()
                    session.echoed += 1
                elif reply in outstanding:  # the ones before it never came back
                    while outstanding[0] != reply:
                        outstanding.popleft()
                        session.lost += 1
                    outstanding.popleft()
                    session.echoed += 1
                else:
                    session.corrupted += 1
            await ws.close()
            session.close_code = 1000
        except ConnectionClosed as exc:
            session.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            session.unanswered = len(outstanding)
        finally:
            session.ended = time.monotonic()

    async def _churn(self) -> None:
        """Connect, echo 3 times, close; again. Counts attempts and failures like the rest."""
        while not self._stop:
            opened = await self._open()
            if opened is None:
                await asyncio.sleep(0.05)
                continue
            ws, _ = opened
            try:
                for i in range(3):
                    await ws.send(f"churn {i}")
                    if await asyncio.wait_for(ws.recv(), self.hang) != f"churn {i}":
                        self.failures.append("churn: wrong echo")
                await ws.close()
                self.churned += 1
            except ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code != 1001:
                    self.failures.append(f"churn: {exc}")
            except TimeoutError:
                self.failures.append("churn: no echo")
                ws.transport.abort()


# -- scenarios ------------------------------------------------------------------------------


def _sum(sessions: list[Session], name: str) -> int:
    return sum(getattr(s, name) for s in sessions)


def _codes(sessions: list[Session]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for s in sessions:
        key = "hung" if s.hung else str(s.close_code)
        codes[key] = codes.get(key, 0) + 1
    return codes


def _group(sessions: list[Session]) -> dict[str, Any]:
    return {
        "connections": len(sessions),
        "sent": _sum(sessions, "sent"),
        "echoed": _sum(sessions, "echoed"),
        "lost": _sum(sessions, "lost"),
        "corrupted": _sum(sessions, "corrupted"),
        "unanswered": _sum(sessions, "unanswered"),
        "hung": sum(s.hung for s in sessions),
        "ended_by": _codes(sessions),
        "max_gap_s": round(max((s.max_gap for s in sessions), default=0.0), 3),
    }


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _steady_workers(master: int, count: int, timeout: float = 30.0) -> set[int]:
    await _wait(lambda: len(workers_of(master)) == count, timeout, f"{count} workers")
    return workers_of(master)


def _victim(load: Load, when: float) -> int:
    """The worker holding the most connections (a fault that hits someone)."""
    groups = load.by_worker(when)
    return max(groups, key=lambda pid: len(groups[pid]))


def _common(load: Load, rate_from: float, rate_to: float, echoed_from: int) -> dict[str, Any]:
    return {
        "attempts": load.attempts,
        "failed_handshakes": len(load.failures),
        "failures": load.failures[:5],
        "echoes_per_s": round((load.echoed() - echoed_from) / max(rate_to - rate_from, 1e-9)),
    }


async def scenario_kill(load: Load, master: int, workers: int, duration: float) -> dict[str, Any]:
    """kill -9 the busiest worker; see who loses what and how fast the victims reconnect."""
    await _steady_workers(master, workers)
    load.start()
    await load.established()
    started, echoed = time.monotonic(), load.echoed()
    await asyncio.sleep(duration / 2)
    t_kill = time.monotonic()
    victim = _victim(load, t_kill)
    os.kill(victim, signal.SIGKILL)
    replaced = await _wait(
        lambda: victim not in workers_of(master) and len(workers_of(master)) == workers,
        30,
        "the replacement",
    )
    await asyncio.sleep(duration / 2)
    await load.stop()
    ended = time.monotonic()
    at_kill = load.by_worker(t_kill)
    victims = at_kill.pop(victim)
    others = [s for group in at_kill.values() for s in group]
    later = [s for s in load.sessions if s.opened > t_kill]
    reconnected = {s.conn for s in later} & {s.conn for s in victims}
    detect = [s.ended - t_kill for s in victims if s.ended is not None]
    reconnect = [
        min(n.opened for n in later if n.conn == s.conn) - t_kill
        for s in victims
        if s.conn in reconnected
    ]
    report = {
        "scenario": "kill",
        "victim_connections": _group(victims),
        "other_connections": _group(others),
        "after_kill_connections": _group(later),
        "victims_reconnected": len(reconnected),
        "victims_closed_within_s": round(max(detect, default=0.0), 3),
        "victims_reconnected_within_s": round(max(reconnect, default=0.0), 3),
        "replacement_within_s": round(replaced, 3),
        **_common(load, started, ended, echoed),
    }
    report["ok"] = (
        report["other_connections"]["lost"] == 0
        and report["other_connections"]["corrupted"] == 0
        and report["other_connections"]["hung"] == 0
        and report["victim_connections"]["hung"] == 0
        and report["after_kill_connections"]["lost"] == 0
        and len(reconnected) == len(victims)
        and not load.failures
    )
    return report


async def scenario_stop(
    load: Load, master: int, workers: int, duration: float, worker_timeout: float
) -> dict[str, Any]:
    """SIGSTOP the busiest worker: it stalls, the others go on; the master replaces it."""
    await _steady_workers(master, workers)
    load.start()
    await load.established()
    started, echoed = time.monotonic(), load.echoed()
    await asyncio.sleep(duration / 2)
    t_stop = time.monotonic()
    victim = _victim(load, t_stop)
    at_stop = load.by_worker(t_stop)
    victims = at_stop.pop(victim)
    others = [s for group in at_stop.values() for s in group]
    os.kill(victim, signal.SIGSTOP)
    try:
        # Compare progress between two moments before the master can have acted (its
        # heartbeat check may see a beat up to 0.25 s old): what was in flight has arrived.
        await asyncio.sleep(min(1.0, worker_timeout * 0.2))
        before = [(s.echoed, s.ended) for s in victims], [s.echoed for s in others]
        await asyncio.sleep(worker_timeout * 0.6 - min(1.0, worker_timeout * 0.2))
        stalled = sum(
            s.echoed == n and s.ended is None for s, (n, _) in zip(victims, before[0], strict=True)
        )
        progressed = sum(s.echoed > n for s, n in zip(others, before[1], strict=True))
        await _wait(
            lambda: victim not in workers_of(master) and len(workers_of(master)) == workers,
            worker_timeout + 30,
            "the master to replace the stopped worker",
        )
        replaced = time.monotonic() - t_stop
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGCONT)
    await asyncio.sleep(duration / 2)
    await load.stop()
    ended = time.monotonic()
    later = [s for s in load.sessions if s.opened > t_stop]
    reconnected = {s.conn for s in later} & {s.conn for s in victims}
    report = {
        "scenario": "stop",
        "worker_timeout_s": worker_timeout,
        "victim_connections": _group(victims),
        "victims_stalled_while_stopped": stalled,
        "other_connections": _group(others),
        "others_progressed_while_stopped": progressed,
        "victims_reconnected": len(reconnected),
        "replaced_after_s": round(replaced, 3),
        **_common(load, started, ended, echoed),
    }
    report["ok"] = (
        report["other_connections"]["lost"] == 0
        and report["other_connections"]["corrupted"] == 0
        and report["other_connections"]["hung"] == 0
        and stalled == len(victims)
        and progressed == len(others)
        and len(reconnected) == len(victims)
        and report["victim_connections"]["hung"] == 0
    )
    return report


async def scenario_hup(
    load: Load, master: int, workers: int, duration: float, churn: int
) -> dict[str, Any]:
    """SIGHUP under load and churn: zero failed handshakes, nothing lost while open."""
    old = await _steady_workers(master, workers)
    load.start(churn=churn)
    await load.established()
    started, echoed = time.monotonic(), load.echoed()
    await asyncio.sleep(duration / 2)
    os.kill(master, signal.SIGHUP)
    drained = await _wait(
        lambda: not workers_of(master) & old and len(workers_of(master)) == workers,
        60,
        "the old workers to drain",
    )
    await asyncio.sleep(duration / 2)
    await load.stop()
    ended = time.monotonic()
    on_old = [s for s in load.sessions if s.worker in old]
    on_new = [s for s in load.sessions if s.worker not in old]
    report = {
        "scenario": "hup",
        "old_worker_connections": _group(on_old),
        "new_worker_connections": _group(on_new),
        "churn_connections": load.churned,
        "old_workers_gone_after_s": round(drained, 3),
        **_common(load, started, ended, echoed),
    }
    moved = all(s.close_code in (1001, 1000) for s in on_old)
    report["ok"] = (
        not load.failures
        and report["old_worker_connections"]["lost"] == 0
        and report["old_worker_connections"]["corrupted"] == 0
        and report["old_worker_connections"]["hung"] == 0
        and report["new_worker_connections"]["lost"] == 0
        and report["new_worker_connections"]["corrupted"] == 0
        and moved
    )
    return report


async def run_scenario(
    name: str,
    url: str,
    master: int,
    *,
    connections: int,
    workers: int,
    duration: float,
    window: int = 1,
    worker_timeout: float = 5.0,
    churn: int = 4,
    hang: float = 10.0,
) -> dict[str, Any]:
    load = Load(url, connections, window=window, hang=max(hang, worker_timeout + 10))
    if name == "kill":
        report = await scenario_kill(load, master, workers, duration)
    elif name == "stop":
        report = await scenario_stop(load, master, workers, duration, worker_timeout)
    elif name == "hup":
        report = await scenario_hup(load, master, workers, duration, churn)
    else:
        raise ValueError(f"unknown scenario {name!r}")
    report.update(connections=connections, workers=workers, window=window)
    return report


# -- the command ------------------------------------------------------------------------------


@contextlib.contextmanager
def own_server(
    workers: int, worker_timeout: float, extra: list[str], app: str = "bench.faults:pid_echo"
) -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "fastws", "serve", app),
            *("--port", str(port), "--workers", str(workers)),
            *("--worker-timeout", str(worker_timeout), "--log-level", "warning"),
            *extra,
        ],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while len(workers_of(proc.pid)) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/", proc.pid
    finally:
        terminate(proc, 15)


def table(reports: list[dict[str, Any]]) -> str:
    rows = ["| scenario | workers | conns | lost (others) | corrupted | hung | victims | figures |"]
    rows.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in reports:
        if r["scenario"] == "hup":
            others = r["new_worker_connections"]
            old = r["old_worker_connections"]
            lost = old["lost"] + others["lost"]
            corrupted = old["corrupted"] + others["corrupted"]
            hung = old["hung"] + others["hung"]
            victims = f"{old['connections']} on old workers, ended {old['ended_by']}"
            figures = (
                f"{r['attempts']:,} handshakes, {r['failed_handshakes']} failed;"
                f" {old['unanswered']} in flight at 1001; old workers gone after"
                f" {r['old_workers_gone_after_s']} s; {r['echoes_per_s']:,} echoes/s"
            )
        else:
            others, victim = r["other_connections"], r["victim_connections"]
            lost, corrupted, hung = others["lost"], others["corrupted"], others["hung"]
            victims = (
                f"{victim['connections']} ended {victim['ended_by']},"
                f" {r['victims_reconnected']} reconnected"
            )
            if r["scenario"] == "kill":
                figures = (
                    f"{others['echoed']:,} echoes on other workers; victims closed within"
                    f" {r['victims_closed_within_s']} s, reconnected within"
                    f" {r['victims_reconnected_within_s']} s; {r['echoes_per_s']:,} echoes/s"
                )
            else:
                figures = (
                    f"{r['victims_stalled_while_stopped']} stalled,"
                    f" {r['others_progressed_while_stopped']} others kept echoing;"
                    f" replaced after {r['replaced_after_s']} s (worker_timeout"
                    f" {r['worker_timeout_s']} s); {r['echoes_per_s']:,} echoes/s"
                )
        rows.append(
            f"| {r['scenario']} | {r['workers']} | {r['connections']} | {lost} | {corrupted}"
            f" | {hung} | {victims} | {figures} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--scenarios", default="kill,stop,hup")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=1, help="messages in flight per connection")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario")
    parser.add_argument("--worker-timeout", type=float, default=5.0)
    parser.add_argument("--churn", type=int, default=4, help="connect/echo/close clients (hup)")
    parser.add_argument("--socket-mode", default="reuseport", choices=["reuseport", "shared"])
    parser.add_argument("--url", help="an already running server (with --pid of its master)")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)
    raise_fd_limit()
    reports = []
    for name in args.scenarios.split(","):
        with contextlib.ExitStack() as stack:
            if args.url:
                url, master = args.url, args.pid
            else:
                url, master = stack.enter_context(
                    own_server(
                        args.workers, args.worker_timeout, ["--socket-mode", args.socket_mode]
                    )
                )
            report = asyncio.run(
                run_scenario(
                    name,
                    url,
                    master,
                    connections=args.connections,
                    workers=args.workers,
                    duration=args.duration,
                    window=args.window,
                    worker_timeout=args.worker_timeout,
                    churn=args.churn,
                )
            )
        reports.append(report)
        print(json.dumps(report), flush=True)
    if not args.json:
        print(table(reports))
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
