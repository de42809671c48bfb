"""ASGI lifespan (fastws/asgi/lifespan.py): once per worker, its state in every scope; a
failed startup stops the server with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from tests.asgi.conftest import http_base
from tests.conftest import REPO_ROOT, free_port


def serve(app: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run `fastws serve APP` to its end (it is expected to stop by itself)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "fastws", "serve", app, "--port", str(free_port()), *options],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_startup_failure_stops_the_server_with_one_line() -> None:
    """A lifespan startup that raises (Starlette reports lifespan.startup.failed with its
    traceback): each worker logs one line naming the error, the master stops with status 3
    instead of respawning, no traceback reaches the log."""
    result = serve("tests.asgi.apps:failing_app", "--workers", "2")
    assert result.returncode == 3, result.stderr
    failures = [line for line in result.stderr.splitlines() if "failed to boot" in line]
    assert failures, result.stderr
    assert "ASGI lifespan startup failed: RuntimeError: database unreachable" in failures[0]
    assert "Traceback" not in result.stderr


def test_startup_failure_in_a_single_process() -> None:
    """--workers 0: the same one line, exit status 3."""
    result = serve("tests.asgi.apps:failing_app", "--workers", "0")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "fastws serve: error: ASGI lifespan startup failed: RuntimeError: database unreachable"
    )


def test_state_from_lifespan_reaches_requests_on_every_worker(fastapi_server: Any) -> None:
    """The lifespan ran in each of the two workers: every request, whichever worker took
    it, sees the state its lifespan yielded."""
    for _ in range(20):
        with httpx.Client(base_url=http_base(fastapi_server)) as client:  # new connections
            created = client.post("/items", json={}).json()
            assert created["greeting"] == "hello from lifespan"


def test_an_app_without_lifespan_is_served(start_server: Any) -> None:
    """An ASGI app that raises on the lifespan scope is served without lifespan, as the
    ASGI spec asks; the server logs that once."""
    server = start_server("tests.asgi.apps:no_lifespan_app")
    assert httpx.get(http_base(server) + "/").text == "bare"
    assert "ASGI lifespan not supported by the application" in server.stderr()


def test_startup_and_shutdown_run_once_per_worker(
    start_server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """Two workers: two startups (one per worker process) before serving, and each worker's
    shutdown when the server stops (SIGTERM)."""
    record = tmp_path / "lifespan.log"
    monkeypatch.setenv("ASGI_TEST_LIFESPAN_LOG", str(record))
    server = start_server("tests.asgi.apps:starlette_app", workers=2)
    assert httpx.get(http_base(server) + "/").status_code == 200
    # The port answers once one worker serves; the other may still be starting up.
    server.wait_for_log("serving (slot 1)", timeout=20)
    server.wait_for_log("serving (slot 0)", timeout=20)
    started = {line.split()[1] for line in record.read_text().splitlines()}
    assert len(started) == 2 and str(server.pid) not in started  # the workers, not the master
    server.stop()
    lines = record.read_text().splitlines()
    assert sorted(lines) == sorted([f"startup {pid}" for pid in started] + [
        f"shutdown {pid}" for pid in started
    ])  # fmt: skip
