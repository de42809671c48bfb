"""What a user of the installed package gets besides the code (issue 18 items 7 and 14): the
license the metadata declares, a changelog, the supported platform stated, and type hints
that a type checker reads from an installed (not editable) copy (PEP 561 `py.typed`), with
which the README's Python examples pass `mypy --strict`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.readme import blocks

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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the tree, installed in a plain directory (not editable), once for
    this module's tests."""
    pytest.importorskip("mypy")
    target = tmp_path_factory.mktemp("site")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    return target


def mypy_strict(site: Path, folder: Path, *files: str) -> list[str]:
    """The error lines of one `mypy --strict` run over `files` in `folder`, fastws taken from
    `site` (the other packages from this environment: numpy, FastAPI...)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        capture_output=True,
        text=True,
        cwd=folder,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return [line for line in result.stdout.splitlines() if ": error:" in line]


def test_an_installed_copy_is_typed(installed: Path, tmp_path: Path) -> None:
    """The installed copy carries py.typed, so mypy --strict type-checks code against
    fastws' own hints: the docstring's example passes and a wrong call is caught (with no
    hints it would be an untyped-import error)."""
    assert (installed / "fastws" / "py.typed").exists()
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import fastws


            async def handler(ws: fastws.ServerConnection) -> None:
                async for message in ws:
                    await ws.send(message)


            def main() -> None:
                fastws.run(handler, port=8000)
                fastws.run(42, port=8000)  # the one error
            """
        )
    )
    errors = mypy_strict(installed, tmp_path, "app.py")
    assert len(errors) == 1, errors
    assert "app.py:12:" in errors[0] and 'Argument 1 to "run"' in errors[0], errors


#: A README block's first line that names its file: `# chat.py — run with: ...`.
_NAMED = re.compile(r"# (\w+\.py)\b")


def test_the_readme_examples_pass_mypy_strict(installed: Path, tmp_path: Path) -> None:
    """Item 7: every ```python block of README.md, exactly as written, passes `mypy --strict`
    against the installed copy, in one run. A block whose first line names its file
    (`# chat.py — ...`) is written under that name, so a later block can import it; the
    others as readme_N.py. In the same run, a copy of the first block with one call
    misspelt must be the one file with errors: the check would see a wrong example."""
    code = blocks(language="python")
    assert len(code) >= 8, "the README's Python examples were not found"
    files = []
    for number, block in enumerate(code, 1):
        named = _NAMED.match(block)
        name = named[1] if named else f"readme_{number}.py"
        assert name not in files, f"two README blocks are {name}"
        (tmp_path / name).write_text(block)
        files.append(name)
    assert "ws.send(" in code[0]
    (tmp_path / "broken_example.py").write_text(code[0].replace("ws.send(", "ws.sendd("))
    errors = mypy_strict(installed, tmp_path, *files, "broken_example.py")
    wrong = [line for line in errors if not line.startswith("broken_example.py:")]
    assert not wrong, "README examples that fail mypy --strict:\n" + "\n".join(wrong)
    assert any('has no attribute "sendd"' in line for line in errors), errors


def test_the_handler_type_has_what_the_readme_documents() -> None:
    """Item 7: every `ws.NAME` the README mentions is on fastws.ServerConnection, the type a
    handler receives (exported from fastws), except the client's `ws.response` (on the
    client's connection) and the `ws.user = ...` the README shows as the untyped form."""
    import fastws
    from fastws.client import ClientProtocol

    text = (ROOT / "README.md").read_text()
    names = set(re.findall(r"\bws\.([a-z_]+)", text)) - {"user"}
    assert {"send", "recv", "subscribe", "publish", "context"} <= names
    missing = {name for name in names if not hasattr(fastws.ServerConnection, name)}
    assert missing == {"response"}
    assert hasattr(ClientProtocol, "response")
