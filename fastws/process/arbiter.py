"""The master process: binds the sockets, forks the workers and keeps them alive.

It owns no event loop. Signal handlers only queue the signal and wake the main loop (a pipe
given to `signal.set_wakeup_fd`); the main loop dispatches each signal to a `handle_*` method,
reaps exited workers with `waitpid(-1, WNOHANG)`, kills workers whose heartbeat is older than
worker_timeout, and forks replacements, backing off when a slot's workers keep dying young.

Signals, as gunicorn users expect:

- TERM, INT: graceful stop. Workers stop accepting, send Close 1001 to every client and wait for
  the closing handshakes up to graceful_timeout; then the master exits 0.
- QUIT: immediate stop.
- HUP: zero-downtime reload. New workers re-import the application; once a new worker serves,
  the old worker of its slot is stopped gracefully. If the new code fails to boot, the old
  workers keep serving.
- TTIN / TTOU: one worker more / less.

If no worker has ever booted (the application fails at start), the master stops with the
worker's reason and exit status 3 instead of respawning forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import resource
import select
import signal
import ssl as _ssl
import sys
import sysconfig
import time
from collections.abc import Collection
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from ..config import Config
from ..pubsub.ring import Ring
from ..stats.scoreboard import BOOTING, READY, STOPPING, Scoreboard
from .sockets import Listeners
from .worker import WORKER_BOOT_ERROR, WorkerSpec, run_worker

if TYPE_CHECKING:
    from ..server.server import Handler

__all__ = ["Arbiter", "run"]

logger = logging.getLogger("fastws.arbiter")

SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
#: Extra seconds a stopping worker gets beyond graceful_timeout before it is killed.
KILL_MARGIN = 2.0
#: A worker that exits sooner than this after it was forked counts as a failed start.
YOUNG = 5.0
MAX_BACKOFF = 30.0
#: Scoreboard slots: workers, plus as many again during a reload, plus room for TTIN.
MIN_SLOTS = 64


@dataclass
class Worker:
    pid: int
    slot: int  # scoreboard slot (one per process)
    listener: int  # worker slot: which socket it accepts from, which one it replaces
    generation: int
    spawned: float
    stop_sent: float | None = None
    ready: bool = False
    #: When the master first found its heartbeat older than worker_timeout (it kills on the
    #: next look if that is still so), None while it beats.
    overdue: float | None = None


class Arbiter:
    def __init__(
        self,
        app: str,
        handler: Handler,
        config: Config,
        app_modules: Collection[str] = (),
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.handler = handler
        self.config = config
        #: A TLS context object from the Python API; each forked worker inherits it.
        self.ssl = ssl
        #: Modules imported by loading the application. The master imported them only to
        #: check the command line; every worker drops them and imports the application again
        #: after the fork (like gunicorn without --preload), so that a HUP loads new code and a
        #: start and a reload boot the same way.
        self.app_modules = frozenset(app_modules)
        self.num_workers = max(config.workers, 1)
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.reloading = False
        self.listeners = Listeners(config, tls=ssl is not None or config.certfile is not None)
        self.scoreboard: Scoreboard | None = None
        self.ring: Ring | None = None
        self.pid = os.getpid()
        self._signals: list[int] = []
        self._pipe: tuple[int, int] | None = None
        self._failures: dict[int, int] = {}  # listener -> failed starts in a row
        self._next_spawn: dict[int, float] = {}  # listener -> not before (back-off)
        self._ever_ready = False
        self._stopping = False
        self._exit_status = 0

    @property
    def stopping(self) -> bool:
        """A stop was asked for (a signal, or no worker could boot): nothing new is forked."""
        return self._stopping

    @property
    def exit_status(self) -> int:
        """What `run()` returns: 0, or WORKER_BOOT_ERROR when no worker could ever start."""
        return self._exit_status

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> int:
        _raise_open_file_limit()
        try:
            self.listeners.open(self.num_workers)
            if self.config.monitor_address is not None:  # the workers' SO_REUSEPORT port
                from ..server.monitor import probe

                probe(self.config.monitor_address)
        except OSError as exc:
            logger.error("%s", exc.strerror or exc)
            return 1
        self.scoreboard = Scoreboard(max(MIN_SLOTS, 4 * self.num_workers))
        if self.config.broker == "local":  # channels between workers: one ring per slot
            self.ring = Ring(self.scoreboard.slots + 1, self.config.pubsub_ring_size)
        self._install_signals()
        logger.info(
            "master %d listening on %s (%s), %d workers",
            self.pid,
            self.listeners.address,
            "one SO_REUSEPORT socket per worker" if self.listeners.reuseport else "shared socket",
            self.num_workers,
        )
        try:
            self.manage_workers()
            while True:
                self._sleep()
                while self._signals:
                    self.dispatch(self._signals.pop(0))
                self.reap_workers()
                if self._stopping:
                    if not self.workers:
                        break
                    self.kill_overdue()
                    continue
                self.murder_workers()
                self.check_reload()
                self.manage_workers()
        finally:
            self._shutdown()
        return self._exit_status

    def _sleep(self) -> None:
        assert self._pipe is not None
        booting = any(not w.ready for w in self.workers.values())
        timeout = 0.05 if booting or self._stopping else 0.25
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([self._pipe[0]], [], [], timeout)
            if readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._pipe[0], 4096):
                        pass

    def _install_signals(self) -> None:
        r, w = os.pipe()
        for fd in (r, w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            os.set_inheritable(fd, False)
        self._pipe = (r, w)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and len(self._signals) < 10:
            self._signals.append(signum)

    def dispatch(self, signum: int) -> None:
        name = signal.Signals(signum).name
        logger.info("master %d received %s", self.pid, name)
        getattr(self, "handle_" + name[3:].lower())()

    # -- signal handlers -----------------------------------------------------------------

    def handle_term(self) -> None:
        self.stop(graceful=True)

    handle_int = handle_term

    def handle_quit(self) -> None:
        self.stop(graceful=False)

    def handle_hup(self) -> None:
        if self._stopping:
            return
        if self.reloading:
            logger.warning("reload already in progress; HUP ignored")
            return
        self.generation += 1
        self.reloading = True
        logger.info(
            "reloading: starting %d new workers (generation %d)", self.num_workers, self.generation
        )
        for listener in range(self.num_workers):
            try:
                self.spawn_worker(listener)
            except (OSError, RuntimeError) as exc:
                self._abort_reload(f"cannot start a worker: {exc}")
                return

    def handle_ttin(self) -> None:
        if self._stopping:
            return
        assert self.scoreboard is not None
        if 2 * (self.num_workers + 1) > self.scoreboard.slots:  # a reload needs twice as many
            logger.warning("at most %d workers; TTIN ignored", self.scoreboard.slots // 2)
            return
        self.num_workers += 1
        try:
            self.listeners.ensure(self.num_workers)
        except OSError as exc:
            logger.error("cannot add a worker: %s", exc)
            self.num_workers -= 1
            return
        logger.info("workers: %d", self.num_workers)

    def handle_ttou(self) -> None:
        if self._stopping or self.num_workers <= 1:
            return
        self.num_workers -= 1
        for worker in list(self.workers.values()):
            if worker.listener >= self.num_workers:
                self._stop_worker(worker, signal.SIGTERM)
        self.listeners.shrink(self.num_workers)
        logger.info("workers: %d", self.num_workers)

    # -- verbs ---------------------------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        if self._stopping and graceful:
            return
        self._stopping = True
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for worker in list(self.workers.values()):
            self._stop_worker(worker, sig, force=not graceful)
        self.listeners.close()  # stop the kernel from queueing connections nobody will accept

    def spawn_worker(self, listener: int) -> None:
        assert self.scoreboard is not None
        slot = self.scoreboard.claim(listener)
        spec = WorkerSpec(
            handler=self.handler,
            config=self.config,
            app=self.app,
            sock=self.listeners.for_slot(listener),
            close_socks=self.listeners.others(listener),
            close_fds=list(self._pipe or ()),
            scoreboard=self.scoreboard,
            slot=slot,
            ring=self.ring,
            listener=listener,
            master_pid=self.pid,
            reload_modules=self.app_modules,
            ssl=self.ssl,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            self.scoreboard.retire(slot)  # give the slot back
            raise
        if pid == 0:  # pragma: no cover - the child
            run_worker(spec)
        self.workers[pid] = Worker(pid, slot, listener, self.generation, time.monotonic())
        self.scoreboard.set_pid(slot, pid)
        logger.info("worker %d started (slot %d)", pid, listener)

    def manage_workers(self) -> None:
        """Fork a worker for every slot that has none (unless backing off)."""
        now = time.monotonic()
        covered = {
            w.listener
            for w in self.workers.values()
            if w.stop_sent is None and w.generation == self.generation
        }
        for listener in range(self.num_workers):
            if listener in covered or now < self._next_spawn.get(listener, 0.0):
                continue
            try:
                self.spawn_worker(listener)
            except (OSError, RuntimeError) as exc:  # fork failed (EAGAIN, ENOMEM...)
                logger.error(
                    "cannot start a worker for slot %d: %s; retrying in 1 s", listener, exc
                )
                self._next_spawn[listener] = now + 1.0

    def reap_workers(self) -> None:
        assert self.scoreboard is not None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            view = self.scoreboard.read(worker.slot)
            self.scoreboard.retire(worker.slot)
            if self.ring is not None:
                self.ring.retire(worker.slot)
            self._worker_exited(worker, status, view.message)

    def _worker_exited(self, worker: Worker, status: int, message: str) -> None:
        how = _describe_status(status)
        expected = worker.stop_sent is not None
        if expected and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            logger.info("worker %d (slot %d) stopped", worker.pid, worker.listener)
            return
        booted = worker.ready
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == WORKER_BOOT_ERROR:
            reason = message or "see the log above"
            logger.error("worker %d failed to boot: %s", worker.pid, reason)
            if worker.generation and self.reloading and worker.generation == self.generation:
                self._abort_reload(reason)
                return
            if expected:  # a sibling of a failed reload, already told to stop
                return
            if not self._ever_ready and not self._stopping:
                logger.error("no worker could start; stopping the server")
                self._exit_status = WORKER_BOOT_ERROR
                self.stop(graceful=True)
                return
        elif expected:
            logger.warning(
                "worker %d (slot %d) %s while stopping", worker.pid, worker.listener, how
            )
            return
        else:
            logger.error("worker %d (slot %d) %s", worker.pid, worker.listener, how)
        if self._stopping:
            return
        young = not booted or time.monotonic() - worker.spawned < YOUNG
        failures = self._failures.get(worker.listener, 0) + 1 if young else 0
        self._failures[worker.listener] = failures
        if failures > 1:
            delay = min(0.1 * 2 ** (failures - 1), MAX_BACKOFF)
            self._next_spawn[worker.listener] = time.monotonic() + delay
            logger.warning(
                "slot %d: %d failed starts in a row, next start in %.1f s",
                worker.listener,
                failures,
                delay,
            )

    def murder_workers(self) -> None:
        """Kill workers whose event loop stopped beating (worker_timeout), mark booted ones."""
        assert self.scoreboard is not None
        timeout = self.config.worker_timeout
        now = time.monotonic()
        for worker in list(self.workers.values()):
            view = self.scoreboard.read(worker.slot)
            if not worker.ready and view.state in (READY, STOPPING) and view.pid == worker.pid:
                worker.ready = True
                self._ever_ready = True
                self._failures.pop(worker.listener, None)
            if timeout is None or worker.stop_sent is not None:
                continue
            last = max(view.heartbeat, worker.spawned) if view.state != BOOTING else worker.spawned
            if now - last <= timeout:
                worker.overdue = None
                continue
            if worker.overdue is None:
                # Seen once: look again on the next tick before killing (a fraction of a
                # second), so one odd read of the slot never costs a worker's connections.
                worker.overdue = now
                continue
            logger.error(
                "worker %d (slot %d) timed out: no heartbeat for %.1f s; killing it"
                " (its scoreboard slot %d: pid %d, %s, last beat %.1f s ago; forked %.1f s ago)",
                worker.pid,
                worker.listener,
                now - last,
                worker.slot,
                view.pid,
                view.state_name,
                now - view.heartbeat,
                now - worker.spawned,
            )
            self._stop_worker(worker, signal.SIGKILL, force=True)
        self.kill_overdue()

    def kill_overdue(self) -> None:
        """SIGKILL stopping workers still alive after graceful_timeout (+ a margin)."""
        now = time.monotonic()
        limit = self.config.graceful_timeout + KILL_MARGIN
        for worker in self.workers.values():
            if worker.stop_sent is not None and now - worker.stop_sent > limit:
                logger.warning("worker %d did not stop in time; killing it", worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.stop_sent = now - limit + 5.0  # do not repeat every tick

    def check_reload(self) -> None:
        """During a reload, stop each old worker once its slot's new worker serves."""
        if not self.reloading:
            return
        new = {
            w.listener: w
            for w in self.workers.values()
            if w.generation == self.generation and w.stop_sent is None
        }
        pending = False
        for worker in list(self.workers.values()):
            if worker.generation == self.generation or worker.stop_sent is not None:
                continue
            replacement = new.get(worker.listener)
            if replacement is not None and replacement.ready:
                self._stop_worker(worker, signal.SIGTERM)
            elif worker.listener < self.num_workers:
                pending = True
        if not pending:
            self.reloading = False
            logger.info("reload done (generation %d)", self.generation)

    def _abort_reload(self, reason: str) -> None:
        logger.error("reload failed, the old workers keep serving: %s", reason)
        self.reloading = False
        for worker in list(self.workers.values()):
            if worker.generation == self.generation:
                self._stop_worker(worker, signal.SIGTERM)
        # Old workers carry on; replacements for them are forked from the old code.
        self.generation -= 1
        for worker in self.workers.values():
            worker.generation = min(worker.generation, self.generation)

    def _stop_worker(self, worker: Worker, sig: int, force: bool = False) -> None:
        if worker.stop_sent is not None and not force:
            return
        if worker.stop_sent is None:
            worker.stop_sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    def _shutdown(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.workers.pop(pid, None)
        self.listeners.close()
        signal.set_wakeup_fd(-1)
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if self._pipe is not None:
            for fd in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipe = None
        logger.info("master %d exiting", self.pid)


def _raise_open_file_limit() -> None:
    """Every connection is a file descriptor: let the workers (they inherit it) use the hard
    limit, not the soft one (often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            logger.debug("open file limit raised from %d to %d", soft, hard)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


def application_modules(names: Collection[str]) -> list[str]:
    """Of the modules loading the application imported, those a reload must import again.

    The application's own code: not fastws, not the standard library, not installed packages
    (re-importing numpy or a C extension is not safe, and they do not change on a deploy).
    """
    installed = {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sysconfig.get_paths()["stdlib"])
    }
    found = []
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if module is None or path is None or name.split(".")[0] == "fastws":
            continue
        real = os.path.realpath(path)
        if "site-packages" in real or any(real.startswith(p + os.sep) for p in installed):
            continue
        found.append(name)
    return sorted(found)


def run(
    app: str,
    handler: Handler,
    config: Config,
    app_modules: Collection[str] = (),
    ssl: _ssl.SSLContext | None = None,
) -> int:
    """Run the master until it is told to stop; return its exit status."""
    return Arbiter(app, handler, config, app_modules, ssl).run()
