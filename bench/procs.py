"""Server processes for the benchmark: start pinned to a core, probe, measure from /proc, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
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
    """Soft open-file limit up to the hard one, for us and what we start (10,000 conns)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc (workers of a pre-fork server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pids: Iterable[int]) -> int:
    """VmRSS summed over the processes."""
    return sum(_status_kib(p, "VmRSS") for p in pids) * 1024


def hwm_bytes(pids: Iterable[int]) -> int:
    """VmHWM (peak RSS since the process started) summed over the processes."""
    return sum(_status_kib(p, "VmHWM") for p in pids) * 1024


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time used so far by the processes."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM to a server started in its own process group; SIGKILL to the whole group if
    it has not exited after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ServerProcess:
    """A server started in its own process group, pinned to `cpus`, its output to a log file."""

    def __init__(
        self, argv: list[str], host: str, port: int, cpus: set[int], log_path: Path
    ) -> None:
        self.argv = argv
        self.host = host
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        # Pinned right after the fork, before it imports anything or forks workers (which
        # inherit the mask); no preexec_fn, which is unsafe in a threaded parent.
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(self.proc.pid, cpus)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Until a TCP connect succeeds; raises with the server's output if it died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not listening after {timeout} s:\n{self.output()}")

    def tree(self) -> list[int]:
        return descendants(self.pid)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL of its process group after `grace` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its workers, if the master left any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        self._log.close()
