"""bench.asgi_path: the per-message CPU harness runs the real code paths fed from memory
(fastws ASGI with the Starlette echo, the coroutine and listener echoes, Starlette alone)
and prints one figure per row; unknown rows are refused.

Seconds, not a measurement: a few hundred messages, no timing thresholds.
"""

from __future__ import annotations

import re
import subprocess
import sys

from .test_smoke import REPO


def _asgi_path(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.asgi_path", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_each_row_echoes_and_reports_a_figure() -> None:
    """Every fastws row completes its echoes (the harness waits for each echo's write) and
    prints a positive CPU figure under its label."""
    proc = _asgi_path("--rows", "starlette,asgi,coroutine,listener", "--messages", "300",
                      "--repeat", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for label in ("starlette alone", "fastws ASGI", "fastws coroutine", "fastws listener"):
        line = next(line for line in proc.stdout.splitlines() if label in line)
        figure = float(re.match(r"\s*([\d.]+)", line).group(1))  # type: ignore[union-attr]
        assert figure > 0


def test_unknown_rows_are_refused() -> None:
    """A typo in --rows is an error naming it (exit 2), not a run of nothing."""
    proc = _asgi_path("--rows", "asgi,nonsense", "--messages", "10")
    assert proc.returncode == 2
    assert "unknown rows: nonsense" in proc.stderr
