"""The layering of DESIGN.md, checked from the source: imports point downward only, no module imports itself
back through a circle, and no module is over 800 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "slothflow"
# Lower numbers are lower layers. A module may import its own layer (without circles) or any lower one.
LAYERS = {
    "_walk": 0, "_errors": 0, "_shell": 0, "_util": 0, "_config": 0, "_config_files": 0, "_version": 0,
    "hashing": 1,
    "model": 2,
    "files": 3,
    "executors": 4, "store": 4,
    "scheduler": 5, "provenance": 5,
    "cli": 6, "ui": 6, "functools": 6, "testing": 6, "__init__": 6,
    # redun's import paths: thin re-exports
    "file": 6, "task": 6, "expression": 6, "context": 6, "config": 6, "scripting": 6, "tools": 6,
}
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if "migrations" in rel.parts:
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out["slothflow." + ".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"{module}: its top-level name {top!r} has no layer in tests/test_layers.py")
    return LAYERS[top]


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """slothflow modules imported by a file (outside ``if TYPE_CHECKING:`` blocks)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if top_level_only and inner:
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("slothflow"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                if name.startswith("slothflow"):
                    found.add(name)
                    found.update(f"{name}.{a.name}" for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_downward(module: str) -> None:
    own = _layer(module)
    upward = sorted({
        f"{target} (layer {_layer(target)})"
        for name in _imports(MODULES[module], module, top_level_only=False)
        if (target := _resolve(name)) is not None and _layer(target) > own
    })
    assert not upward, f"{module} (layer {own}) imports upward: {', '.join(upward)}"


def test_no_import_circles() -> None:
    graph = {
        m: {t for n in _imports(p, m, top_level_only=True) if (t := _resolve(n)) is not None and t != m}
        for m, p in MODULES.items()
    }
    # A package's __init__ re-exporting its own submodules is not a circle of concepts.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (t.startswith(m + ".") and MODULES[m].name == "__init__.py")}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}: split it by concept)"
