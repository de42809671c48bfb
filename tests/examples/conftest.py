"""The demos in examples/, run as their README says (``python -m examples.NAME``), driven by
Debian's Chromium through Playwright (the `chromium` fixture of tests/browser)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser.conftest import chromium  # noqa: F401  (a fixture, used by name)
from tests.conftest import REPO_ROOT

STARTUP_TIMEOUT = 15.0


class Demo:
    """A running ``python -m examples.NAME``: its page's address and its log."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"examples.{name}", "--port", "0", "--http-port", "0", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if line.startswith("open http://"):
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(STARTUP_TIMEOUT) or not self.lines:
            self.stop()
            raise RuntimeError(f"examples.{name} did not start: {''.join(self.lines)}")
        found = re.search(r"open (http://\S+)", "".join(self.lines))
        if found is None:
            self.stop()
            raise RuntimeError(f"examples.{name} did not start: {''.join(self.lines)}")
        self.url: str = found[1]

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        """SIGTERM (the demo stops its servers), then SIGKILL of its group if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            status = self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return status


@pytest.fixture
def demo(request: pytest.FixtureRequest) -> Iterator[Callable[..., Demo]]:
    """``demo("streaming")`` starts ``python -m examples.streaming`` on free ports."""
    started: list[Demo] = []

    def start(name: str, *args: str) -> Demo:
        started.append(Demo(name, *args))
        return started[-1]

    yield start
    for running in started:
        status = running.stop()
        request.node.add_report_section("teardown", f"examples.{running.name} log", running.log())
        assert status == 0, f"the demo exited with {status}:\n{running.log()}"


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[[], Any]]:  # noqa: F811
    """``new_page()``: a page in a fresh browser context (a separate visitor)."""
    contexts: list[Any] = []

    def make() -> Any:
        context = chromium.new_context(viewport={"width": 1000, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page

    yield make
    for context in contexts:
        context.close()
