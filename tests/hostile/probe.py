"""Tools for the hostile-input tests: a legitimate client echoing throughout an attack, and
figures about the server process (RSS, open file descriptors) read from /proc.

The probe's property is "every echo came back", each within the generous `TIMEOUT`; no test
asserts a latency. The worst round trip is recorded so a test can print it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING

from websockets.sync.client import connect

from tests.wire import TIMEOUT

if TYPE_CHECKING:
    from tests.conftest import ServerProcess

MiB = 1 << 20


class EchoProbe(threading.Thread):
    """A websockets-library client that echoes a numbered message every `interval` seconds
    until stopped; `stop()` raises if any echo was lost, wrong or late beyond TIMEOUT."""

    def __init__(self, server: ServerProcess, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url = server.url
        self.interval = interval
        self.echoes = 0
        self.worst = 0.0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with connect(
                self.url, compression=None, proxy=None, open_timeout=TIMEOUT, ping_interval=None
            ) as ws:
                while not self._stop_event.is_set():
                    message = f"probe {self.echoes}"
                    start = time.monotonic()
                    ws.send(message)
                    assert ws.recv(timeout=TIMEOUT) == message
                    self.worst = max(self.worst, time.monotonic() - start)
                    self.echoes += 1
                    self._stop_event.wait(self.interval)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> EchoProbe:
        self.start()
        deadline = time.monotonic() + TIMEOUT
        while self.echoes == 0 and self.error is None:  # connected and echoing
            assert time.monotonic() < deadline, "the probe got no first echo"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """One more echo after the attack, then stop; raise if any echo failed."""
        seen = self.echoes
        deadline = time.monotonic() + TIMEOUT
        while self.echoes <= seen and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop_event.set()
        self.join(TIMEOUT + 1)
        assert not self.is_alive(), "the probe is stuck waiting for an echo"
        if self.error is not None:
            raise AssertionError(f"the probe failed after {self.echoes} echoes") from self.error
        assert self.echoes > 1

    def summary(self) -> str:
        return f"probe: {self.echoes} echoes, worst round trip {self.worst * 1000:.0f} ms"


def fd_count(server: ServerProcess) -> int:
    """Open file descriptors of the server's process tree (sockets included)."""
    total = 0
    for pid in server.pids():
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def wait_until(predicate: object, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.05)


def settled_fd_count(server: ServerProcess, quiet: float = 0.5) -> int:
    """fd_count once it has not changed for `quiet` seconds: worker processes may still be
    starting after the port first accepts connections."""
    deadline = time.monotonic() + TIMEOUT
    count, since = fd_count(server), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the server's fd count never settled"
        time.sleep(0.05)
        now = fd_count(server)
        if now != count:
            count, since = now, time.monotonic()
    return count
