"""The process harness: start a server process, wait until it serves, read its process tree
from /proc, stop it and everything it forked.

One module for everything that runs servers as real processes: the benchmarks (bench/), the
load-test runner (`python loadtests/run.py`, which puts the repository root on sys.path to
import it) and the test suite (tests/conftest.py's fixtures, tests/process). Linux only: the
process tree and its memory and CPU come from /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CLK_TCK",
    "ServerProcess",
    "alive",
    "children",
    "cpu_by_pid",
    "cpu_seconds",
    "cpu_split",
    "descendants",
    "free_port",
    "hwm_bytes",
    "pss_bytes",
    "raise_fd_limit",
    "rss_bytes",
    "stop_process",
    "terminate",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the machine --------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind to port 0, read it, release it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def cpu_split() -> tuple[set[int], set[int]]:
    """(server cpus, load generator cpus): the first allowed cpu for the server, the rest for
    the generator; one cpu for both when there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == 1:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def raise_fd_limit() -> int:
    """Soft open-file limit up to the hard one, for us and what we start (10,000 conns).
    Also usable as a Popen `preexec_fn`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the process tree, from /proc ---------------------------------------------------------


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after "pid (comm) " (comm may hold spaces and parentheses): [0] is the
    state, [1] the parent, [11] and [12] utime and stime, [21] rss in pages. None: gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _processes() -> dict[int, list[str]]:
    """Every process's stat fields, by pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            found[int(entry)] = fields
    return found


def descendants(pid: int) -> list[int]:
    """`pid` first, then every process below it (the workers of a pre-fork server)."""
    kids: dict[int, list[int]] = {}
    for child, fields in _processes().items():
        kids.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def children(pid: int) -> set[int]:
    """Live (non-zombie) direct children of `pid`: a master's workers."""
    return {
        child
        for child, fields in _processes().items()
        if int(fields[1]) == pid and fields[0] != "Z"
    }


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pids: Iterable[int]) -> int:
    """VmRSS summed over the processes (pages the forked workers share count in each)."""
    return sum(_kib(f"/proc/{p}/status", "VmRSS") for p in pids) * 1024


def hwm_bytes(pids: Iterable[int]) -> int:
    """VmHWM (peak RSS since the process started) summed over the processes."""
    return sum(_kib(f"/proc/{p}/status", "VmHWM") for p in pids) * 1024


def pss_bytes(pids: Iterable[int]) -> int:
    """Pss summed over the processes: shared pages split between their sharers, so the sum
    is the tree's real footprint."""
    return sum(_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids) * 1024


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds used so far, per process (gone ones left out)."""
    out = {}
    for p in pids:
        fields = _stat(p)
        if fields is not None:
            out[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time used so far by the processes."""
    return sum(cpu_by_pid(pids).values())


# -- stopping -----------------------------------------------------------------------------


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_process(
    proc: subprocess.Popen[Any], grace: float = 5.0, *, group_term: bool = False
) -> int:
    """Stop a process started in its own process group (`start_new_session=True`): SIGTERM
    (to the whole group with `group_term`, else to the leader, whose workers follow it), wait
    up to `grace` seconds, then SIGKILL the group: whatever the leader left behind goes too.
    Idempotent; returns the exit status."""
    if proc.poll() is None:
        if group_term:
            _killpg(proc.pid, signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    _killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM to a server started in its own process group; SIGKILL to the whole group if
    it has not exited after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGKILL the child if its parent (e.g. pytest) dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(die_with_parent: bool, fd_limit: bool) -> Callable[[], None] | None:
    """What runs in the child between fork and exec (nothing if nothing is asked)."""
    if not (die_with_parent or fd_limit):
        return None

    def setup() -> None:  # pragma: no cover - runs in the child
        if die_with_parent:
            _die_with_parent()
        if fd_limit:
            raise_fd_limit()

    return setup


# -- a server process ---------------------------------------------------------------------


class ServerProcess:
    """A server started in its own process group, its output in log files.

    `log_path` takes stdout, and stderr too unless `stderr_path` is given. `cpus` pins it
    (and what it forks) to those cpus; `die_with_parent` has the kernel kill it if this
    process dies (a test run that crashes leaves no server behind); `fd_limit` raises its
    open-file limit to the hard one. Nothing waits here: call `wait_listening()`.
    """

    def __init__(
        self,
        argv: list[str],
        host: str,
        port: int,
        cpus: set[int] | None = None,
        log_path: Path | None = None,
        *,
        stderr_path: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        fd_limit: bool = False,
    ) -> None:
        self.argv = self.cmd = list(argv)
        self.host = host
        self.port = port
        self.log_path = log_path
        self.stderr_path = stderr_path
        environ = dict(os.environ if env is None else env)
        environ.setdefault("PYTHONUNBUFFERED", "1")
        out: IO[bytes] | int = subprocess.DEVNULL
        err: IO[bytes] | int = subprocess.STDOUT
        files: list[IO[bytes]] = []
        if log_path is not None:
            out = open(log_path, "wb")  # noqa: SIM115 - closed below, the child keeps its copy
            files.append(out)
        if stderr_path is not None:
            err = open(stderr_path, "wb")  # noqa: SIM115 - closed below
            files.append(err)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=environ,
                cwd=cwd,
                start_new_session=True,  # its own process group: its workers go with it
                preexec_fn=_child_setup(die_with_parent, fd_limit),
            )
        finally:
            for file in files:
                file.close()
        if cpus is not None:
            # Pinned right after the fork, before it imports anything or forks workers (which
            # inherit the mask).
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(self.proc.pid, cpus)

    # -- introspection ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    def url_for(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def stdout(self) -> str:
        """Everything written to `log_path` so far."""
        return "" if self.log_path is None else self.log_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything written to stderr so far (the server's logs)."""
        if self.stderr_path is None:
            return self.stdout()
        return self.stderr_path.read_text(errors="replace")

    def output(self, tail: int = 4000) -> str:
        """The end of what it wrote, for an error message."""
        text = self.stdout() if self.stderr_path is None else self.stderr() + self.stdout()
        return text[-tail:]

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Poll stderr until it contains `text`; return the whole log."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.stderr()
            if text in logs:
                return logs
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s; stderr:\n{logs}")
            time.sleep(0.02)

    def tree(self) -> list[int]:
        """The server's pid and those of every process it forked."""
        return descendants(self.pid)

    pids = tree

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its child processes."""
        return rss_bytes(self.tree())

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} {shlex.join(self.cmd)}>"

    # -- lifetime -----------------------------------------------------------------------

    def wait_listening(self, timeout: float = 20.0, probe: bytes | None = None) -> None:
        """Until a TCP connect succeeds, or with `probe` until the bytes sent get an answer
        (a pre-fork master listens before its workers serve: ready means answered, not
        accepted). Raises RuntimeError with the server's output if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before listening:\n"
                    f"$ {shlex.join(self.cmd)}\n{self.output()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5) as sock,
            ):
                if probe is not None:
                    sock.sendall(probe)
                    sock.recv(1)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not listening on {self.host}:{self.port} after {timeout} s:\n"
                    f"$ {shlex.join(self.cmd)}\n{self.output()}"
                )
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float = 5.0, *, group_term: bool = False) -> int:
        """SIGTERM, wait up to `grace` s, then SIGKILL of its process group. Idempotent."""
        return stop_process(self.proc, grace, group_term=group_term)
