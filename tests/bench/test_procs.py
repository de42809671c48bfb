"""The process harness (bench/procs.py) that the benchmarks, the load-test runner and the test
suite's fixtures share: its /proc reading and its stopping, on real processes.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import procs

# A process that forks one child, prints the child's pid and serves nothing: both sleep.
FORKER = textwrap.dedent(
    """
    import os, sys, time
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(60)
    """
)


def _child_pid(server: procs.ServerProcess) -> int:
    deadline = time.monotonic() + 10
    while not server.stdout().strip():
        assert time.monotonic() < deadline, "the forker printed nothing"
        time.sleep(0.02)
    return int(server.stdout().split()[0])


def test_tree_children_and_stop_reach_the_forked_processes(tmp_path: Path) -> None:
    """descendants() and children() find a forked child from /proc, and stop() takes the
    child down with its parent (the whole process group), so a benchmark or a test leaves
    no worker behind."""
    server = procs.ServerProcess(
        [sys.executable, "-c", FORKER], "127.0.0.1", 0, log_path=tmp_path / "out"
    )
    try:
        child = _child_pid(server)
        assert server.tree()[0] == server.pid
        assert child in server.tree()
        assert procs.children(server.pid) == {child}
        assert procs.alive(child)
        assert server.rss_bytes() > 0
        assert set(procs.cpu_by_pid(server.tree())) == {server.pid, child}
    finally:
        status = server.stop(grace=0.5)
    assert status != 0  # it did not exit by itself: it was stopped
    deadline = time.monotonic() + 5
    while procs.alive(child):  # reparented to init, which reaps it
        assert time.monotonic() < deadline, f"{child} outlived the stop"
        time.sleep(0.02)


def test_a_server_that_exits_is_reported_with_its_output(tmp_path: Path) -> None:
    """wait_listening() does not wait out its timeout for a server that already died: it
    raises at once with the exit status and what the server wrote."""
    server = procs.ServerProcess(
        [sys.executable, "-c", "import sys; sys.exit('cannot listen: busy')"],
        "127.0.0.1",
        procs.free_port(),
        log_path=tmp_path / "out",
    )
    with pytest.raises(RuntimeError, match=r"exited with 1 before listening(.|\n)*busy"):
        server.wait_listening(timeout=30)
    assert server.stop() == 1


def test_alive_is_false_for_a_pid_that_is_not_running() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    deadline = time.monotonic() + 5
    while procs.alive(pid):  # a zombie until reaped: not alive
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.waitpid(pid, 0)
    assert not procs.alive(pid)
