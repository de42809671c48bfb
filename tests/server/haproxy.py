"""A real HAProxy (Debian's `haproxy` package) in front of test servers, started per test.

`HAProxy(config)` writes the configuration, runs `haproxy -db -f FILE` in the foreground in
its own process group, waits until every `bind` accepts connections and stops it (by PID)
on exit. Without the binary the tests are skipped, unless FASTWS_TEST_HAPROXY=required (set
by .ci/run), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

BINARY_PATHS = ("/usr/sbin/haproxy", "/usr/bin/haproxy")
GLOBAL = """\
global
    maxconn 256
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 30s
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next(
        (path for path in BINARY_PATHS if os.access(path, os.X_OK)), None
    )
    if found is None:
        reason = "haproxy is not installed (apt-get install haproxy)"
        if os.environ.get("FASTWS_TEST_HAPROXY") == "required":
            pytest.fail(f"{reason} (FASTWS_TEST_HAPROXY=required)", pytrace=False)
        pytest.skip(reason)
    return found


class HAProxy:
    """HAProxy running `sections` (frontends/backends) after a fixed global/defaults part;
    `binds` are the (host, port) pairs to wait for."""

    def __init__(self, sections: str, binds: list[tuple[str, int]]) -> None:
        self.binary = haproxy_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="fastws-haproxy-")
        self.config_path = Path(self._dir.name) / "haproxy.cfg"
        self.config_path.write_text(GLOBAL + sections)
        self.log_path = Path(self._dir.name) / "haproxy.log"
        self.binds = binds
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HAProxy:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        for bind in self.binds:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited: {self.log()}")
                try:
                    socket.create_connection(bind, timeout=0.5).close()
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"haproxy not on {bind}: {self.log()}") from exc
                    time.sleep(0.02)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc_info: Any) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._dir.cleanup()
