"""Finding the real clients and peers that tests/browser and tests/interop run: Node and the
npm packages .ci/run installs beside it, and the rule for what is missing.

A missing one skips its tests with the reason, unless ``FASTWS_TEST_BROWSERS=required`` (set
by .ci/run, which installs them), which makes it a failure. Node itself stays optional.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

# Where .ci/run puts `npm install node@22 websocket ws` (outside the repository).
NODE_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastws-tests" / "node22"
)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the browsers and peers are supposed to be installed (CI)."""
    if os.environ.get("FASTWS_TEST_BROWSERS") == "required":
        pytest.fail(f"{reason} (FASTWS_TEST_BROWSERS=required)", pytrace=False)
    pytest.skip(reason)


def _node_major(command: str) -> int | None:
    try:
        out = subprocess.run(
            [command, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"v(\d+)\.\d+\.\d+\s*", out)
    return int(match[1]) if match else None


def node_command() -> list[str]:
    """Node 22+ (global WebSocket), else Node 20/21 with --experimental-websocket; skips the
    test when there is none."""
    candidates = [
        os.environ.get("FASTWS_TEST_NODE"),
        str(NODE_CACHE / "node_modules" / ".bin" / "node"),
        shutil.which("node"),
    ]
    seen = []
    for candidate in filter(None, candidates):
        major = _node_major(candidate)
        seen.append(f"{candidate}: {'not runnable' if major is None else f'v{major}'}")
        if major is not None and major >= 22:
            return [candidate]
        if major in (20, 21):
            return [candidate, "--experimental-websocket"]
    pytest.skip(
        "no Node >= 20 with a WebSocket client (" + "; ".join(seen or ["none found"]) + "); "
        f"npm install --prefix {NODE_CACHE} node@22 (.ci/run does)"
    )


def node_modules(package: str) -> Path:
    """The node_modules folder holding npm `package` (.ci/run installs `websocket` and `ws`
    next to Node 22; FASTWS_TEST_NODE_MODULES points elsewhere)."""
    modules = Path(os.environ.get("FASTWS_TEST_NODE_MODULES") or NODE_CACHE / "node_modules")
    if not (modules / package / "package.json").is_file():
        unavailable(
            f"npm {package} not found in {modules}: npm install --prefix {modules.parent} "
            "node@22 websocket@1.0.35 ws@8 (.ci/run does), or set FASTWS_TEST_NODE_MODULES"
        )
    return modules


def end_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process we started; its children follow. SIGKILL what is left of its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
