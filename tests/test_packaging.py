"""What a user of the installed package gets besides the code (issue 18 items 7 and 14): the
license the metadata declares, a changelog, the supported platform stated, and type hints
that a type checker reads from an installed (not editable) copy (PEP 561 `py.typed`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_license_file_matches_the_metadata() -> None:
    """pyproject says MIT: LICENSE is the MIT license text, and the classifier agrees."""
    assert PROJECT["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert "License :: OSI Approved :: MIT License" in PROJECT["classifiers"]


def test_the_changelog_has_a_section_for_what_is_not_released() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog")
    assert "## Unreleased" in text
    assert f"## {PROJECT['version']} " in text


def test_linux_is_stated_as_the_supported_platform() -> None:
    """The code uses Linux-only calls (eventfd, prctl, /proc): the metadata and the README say
    so, and claim no other operating system."""
    systems = [c for c in PROJECT["classifiers"] if c.startswith("Operating System ::")]
    assert systems == ["Operating System :: POSIX :: Linux"]
    assert "Supported platform: **Linux**" in (ROOT / "README.md").read_text()


def test_an_installed_copy_is_typed(tmp_path: Path) -> None:
    """A wheel built from the tree and installed in a plain directory carries py.typed, so
    mypy --strict type-checks code against fastws' own hints: the docstring's example passes
    and a wrong call is caught (with no hints it would be an untyped-import error)."""
    pytest.importorskip("mypy")
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (target / "fastws" / "py.typed").exists()
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import fastws


            async def handler(ws: fastws.WebSocket) -> None:
                async for message in ws:
                    await ws.send(message)


            def main() -> None:
                fastws.run(handler, port=8000)
                fastws.run(42, port=8000)  # the one error
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(app)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert "app.py:12:" in errors[0] and 'Argument 1 to "run"' in errors[0], errors
