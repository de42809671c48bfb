"""Helpers for the process tests: /metrics over HTTP, polling, `fastws serve` in a process
(the /proc reading and stopping come from the harness, bench/procs.py)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bench.procs import alive, children, stop_process
from tests.conftest import REPO_ROOT

__all__ = [
    "alive",
    "children",
    "http_get",
    "metrics",
    "slot_of",
    "spawn",
    "total",
    "wait_for",
    "workers",
]

T = TypeVar("T")

_SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def workers(server: Any, count: int, timeout: float = 10.0) -> set[int]:
    """Wait until the master has exactly `count` workers serving; return their pids."""

    def ready() -> set[int] | None:
        pids = children(server.pid)
        if len(pids) != count:
            return None
        info = metrics(server)
        serving = {
            int(dict(labels)["pid"])
            for name, labels in info
            if name == "fastws_worker_info" and dict(labels)["state"] == "ready"
        }
        return pids if serving == pids else None

    return wait_for(ready, timeout, f"{count} workers serving")


def http_get(server: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP GET with the standard library's client."""
    request = urllib.request.Request(f"http://{server.host}:{server.port}{path}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def metrics(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed: {(name, sorted labels): value}."""
    status, _, body = http_get(server, "/metrics")
    assert status == 200, body
    samples = {}
    for line in body.decode().splitlines():
        match = _SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels or "")))
            samples[(name, pairs)] = float(value)
    return samples


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of the series of `name` that have `labels` (all of them without labels: the
    server's total, as Prometheus' `sum()` gives it)."""
    wanted = set(labels.items())
    return sum(
        value for (metric, have), value in samples.items() if metric == name and wanted <= set(have)
    )


def slot_of(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], pid: int) -> str:
    """The worker slot (the `worker` label) of the process `pid`."""
    for name, labels in samples:
        info = dict(labels)
        if name == "fastws_worker_info" and info["pid"] == str(pid):
            return info["worker"]
    raise AssertionError(f"no worker process {pid} in /metrics")


@contextlib.contextmanager
def spawn(
    *args: str, pass_fds: tuple[int, ...] = (), cwd: Path = REPO_ROOT
) -> Iterator[subprocess.Popen[str]]:
    """`python -m fastws serve ARGS...` in its own process group, killed (group and all) after."""
    env = dict(
        os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastws", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        pass_fds=pass_fds,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process(proc, 10)
        if proc.stderr is not None:
            proc.stderr.close()
