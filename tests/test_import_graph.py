"""The package's layering, read from the code: which fastws module imports which.

Data flows down, never back up (issue 16, DESIGN.md): the sans-I/O protocol core imports
nothing above it; buffers, message memory, statistics and configuration sit on it; the I/O
layer (WebSocket, broadcast, channels, server, clients) on those; the process model and the
command line on top. A module may import its own layer or any layer below, never one above,
and no chain of imports leads back to where it started. Imports inside functions count (a
lazy import is still a dependency); imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastws"

#: Lowest first. A module belongs to the first entry naming it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("protocol", ("fastws.protocol", "fastws.exceptions")),
    (
        "buffers/stats",
        (
            "fastws.buffers",
            "fastws.message",
            "fastws.assembler",
            "fastws.payload",
            "fastws.stats",
            "fastws.config",
            "fastws.logs",
        ),
    ),
    (
        "websocket/server",
        (
            "fastws.keepalive",
            "fastws.flow",
            "fastws.closing",
            "fastws.fragments",
            "fastws.outbox",
            "fastws.listener",
            "fastws.handler",
            "fastws.websocket",
            "fastws.broadcast",
            "fastws.pubsub",
            "fastws.server",
            "fastws.asgi",
            "fastws.client",
            "fastws.sync",
            "fastws.locust",
            "fastws.apps",
        ),
    ),
    (
        "process/cli",
        ("fastws.process", "fastws.launch", "fastws.status", "fastws.cli", "fastws.__main__"),
    ),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere, but not under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imports_of(name: str) -> set[str]:
    """The fastws modules `name` imports (a `from package import module` names the module)."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            names: list[str] = []
        else:
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            bases = [base]
            names = [alias.name for alias in node.names]
        for base in bases:
            if not base.startswith("fastws"):
                continue
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            targets.update(submodules or [base])
    targets.discard(name)
    return {t for t in targets if t in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int | None:
    """The index in LAYERS of the module's layer; the package itself is the top."""
    if name == "fastws":
        return len(LAYERS) - 1
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_the_graph_is_read_from_the_code() -> None:
    """The reader sees the imports it must see (relative, absolute, lazy, `from . import x`),
    so that an empty graph cannot make the layering tests pass."""
    assert "fastws.protocol.frames" in GRAPH["fastws.websocket"]
    assert "fastws.stats.counters" in GRAPH["fastws.websocket"]
    assert "fastws.process.arbiter" in GRAPH["fastws.launch"]  # inside a function
    assert "fastws.status" in GRAPH["fastws.cli"]  # `from fastws import status`
    assert "fastws.server.server" not in GRAPH["fastws.launch"]  # TYPE_CHECKING only
    assert sum(map(len, GRAPH.values())) > 50


def test_every_module_has_a_layer() -> None:
    """A new module says where it stands (add it to LAYERS), so the rule covers it."""
    assert [name for name in MODULES if layer(name) is None] == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    """Data flows down: the protocol core knows nothing of the I/O layer, the I/O layer
    nothing of the process model (issue 16)."""
    upward = {
        (source, target): f"{LAYERS[layer(source)][0]} -> {LAYERS[layer(target)][0]}"  # type: ignore[index]
        for source, targets in GRAPH.items()
        for target in targets
        if layer(source) is not None and layer(target) is not None and layer(target) > layer(source)  # type: ignore[operator]
    }
    assert upward == {}


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle check can fail: a made-up three-module loop is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_has_no_cycle() -> None:
    """No chain of imports leads back to where it started (lazy imports included: a
    function-level import that closes a circle only hides it)."""
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize(
    "module",
    [
        "fastws",
        "fastws.protocol",
        "fastws.protocol.frames",
        "fastws.protocol.handshake",
        "fastws.protocol.deflate",
        "fastws.protocol.utf8",
        "fastws.config",
        "fastws.stats.metrics",
        "fastws.cli",
    ],
)
def test_the_core_imports_without_asyncio_or_numpy(module: str) -> None:
    """`import fastws.protocol` (and the top-level package, whose exports are imported on
    first use) loads neither asyncio, uvloop nor numpy: checked in a fresh interpreter."""
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('asyncio', 'uvloop', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_lazy_exports_are_the_real_objects() -> None:
    """`fastws.X` gives the object its module defines (also `fastws.broadcast`, a function
    and a module, once the module is imported), every name in `__all__` resolves, and a name
    that is not exported is an AttributeError, not an ImportError."""
    import fastws
    import fastws.server.server
    from fastws.launch import run
    from fastws.websocket import WebSocket

    assert fastws.run is run
    import fastws.broadcast  # the module and the function share a name: the export wins

    assert callable(fastws.broadcast)
    assert sorted(fastws.__all__) == sorted(fastws._EXPORTS)
    assert fastws.WebSocket is WebSocket
    assert all(getattr(fastws, name) is not None for name in fastws.__all__)
    with pytest.raises(AttributeError):
        fastws.no_such_name  # noqa: B018
