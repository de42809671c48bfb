"""The README's examples, for the tests that run them: fenced blocks by section and language."""

from __future__ import annotations

import re
import shlex
from typing import Any

from tests.conftest import REPO_ROOT

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(section: str | None = None, language: str = "python") -> list[str]:
    """The ```language blocks of the README section titled `section` (any heading level,
    up to the next heading of the same or a higher level), in order; of the whole README
    when no section is given."""
    text = (REPO_ROOT / "README.md").read_text()
    if section is None:
        return [code for lang, code in _FENCE.findall(text) if lang == language]
    lines = text.splitlines(keepends=True)
    found: list[str] = []
    level = 0
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"(#+) (.*)\n?$", line)):
            if level and len(heading[1]) <= level:
                break
            if heading[2] == section:
                level = len(heading[1])
                continue
        if level:
            found.append(line)
    assert level, f"no README section {section!r}"
    return [code for lang, code in _FENCE.findall("".join(found)) if lang == language]


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
