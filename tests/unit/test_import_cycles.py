"""No module of ours imports, even lazily inside a function, a module that imports it back
(a package and its own submodules aside).

A circle works only in one import order (`services/api/app.py` once imported `web.py` inside
`create_app` while `web.py` imported `app.py`), so it is checked on the source, not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.source_tree import ROOT, Module, modules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str], module: Module) -> set[str]:
    """The modules of ours `path` imports anywhere in it (top level, functions, TYPE_CHECKING
    aside: those never run)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in module.imports:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            # `from package import submodule` needs the submodule; any other name, the package.
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return {module for module in found if module in known and module != name}


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def import_graph() -> dict[str, set[str]]:
    parsed = modules()
    known = {module_name(path) for path in parsed}
    return {
        module_name(path): imported_modules(path, known, module) for path, module in parsed.items()
    }


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path from `start` back to itself, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, start]
            # A package imports its own submodules (and they it) by design: not a circle.
            if nxt not in seen and not start.startswith(nxt + "."):
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_imports_a_circle() -> None:
    graph = import_graph()
    circles = {module: cycle_through(graph, module) for module in sorted(graph)}
    found = {module: " -> ".join(path) for module, path in circles.items() if path}
    assert not found, f"import circles: {found}"


def test_the_check_finds_a_circle() -> None:
    graph = {"services.api.a": {"services.api.b"}, "services.api.b": {"services.api.a"}}
    assert cycle_through(graph, "services.api.a") == [
        "services.api.a",
        "services.api.b",
        "services.api.a",
    ]
