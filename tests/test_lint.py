"""The repository's habits, enforced by the suite (issue 16 item 7): `ruff check`, `ruff
format --check` and `mypy fastws` (strict for fastws/protocol/, see pyproject.toml) are clean.

They run here, inside `python -m pytest`, so that the README's one test command, and `.ci/run`
which runs exactly that command, fail on a lint or type error like on any other regression.
The tools come with the `test` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def _ruff() -> str:
    # The one installed beside this interpreter (the test extra's), else the one on PATH.
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    which = shutil.which("ruff")
    if which is None:
        pytest.fail("ruff is missing: pip install -e '.[test]'")
    return which


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff_is_clean(args: tuple[str, ...]) -> None:
    """ruff's lint rules and formatting (pyproject.toml) hold for every file in the repository."""
    result = _run(_ruff(), *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    """The package type-checks; fastws/protocol/ under mypy --strict's rules."""
    result = _run(sys.executable, "-m", "mypy", "fastws")
    assert result.returncode == 0, result.stdout + result.stderr
