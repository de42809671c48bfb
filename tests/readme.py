"""The README's examples, for the tests that run them: fenced blocks by section and language."""

from __future__ import annotations

import re
import shlex
from typing import Any

from tests.conftest import REPO_ROOT

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(section: str, language: str) -> list[str]:
    """The ```language blocks of the README section titled `section` (## level), in order."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    return [code for lang, code in _FENCE.findall(body) if lang == language]


def serve_options(command: str) -> dict[str, Any]:
    """The options of a README `fastws serve APP --flag value ...` line, as the server fixture
    takes them (`--proxy-protocol require` -> proxy_protocol="require", a bare flag -> True);
    --port is left to the fixture."""
    words = shlex.split(command)
    assert words[:2] == ["fastws", "serve"], command
    options: dict[str, Any] = {}
    rest = words[3:]
    while rest:
        flag = rest.pop(0)
        assert flag.startswith("--"), command
        value: Any = True
        if rest and not rest[0].startswith("--"):
            value = rest.pop(0)
        options[flag[2:].replace("-", "_")] = value
    options.pop("port", None)
    return options
