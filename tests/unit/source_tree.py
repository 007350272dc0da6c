"""Our own modules' source, read and parsed once for the unit tests that check it (import
circles, docstrings): each of them parsed every file again. Only what they check is kept (the
trees are some 150,000 objects that every garbage collection after would walk)."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "dev", "bench", "chaos")


@dataclass(frozen=True)
class Module:
    docstring: str | None
    #: Its import statements at any depth (functions too), but none under `if TYPE_CHECKING:`,
    #: which never runs.
    imports: tuple[ast.Import | ast.ImportFrom, ...]


@functools.cache
def modules() -> dict[Path, Module]:
    """Every module of ours by its path, in path order."""
    paths = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    return {path: _read(path) for path in paths}


def _read(path: Path) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = tuple(s for s in statements(tree) if isinstance(s, ast.Import | ast.ImportFrom))
    return Module(ast.get_docstring(tree), imports)


def statements(node: ast.AST) -> Iterator[ast.AST]:
    """The statements in `node` at any depth (in functions, classes, branches, handlers), but
    none under an `if TYPE_CHECKING:`, without walking expressions (no statement is in one)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
            if not is_type_checking(child):
                yield child
                yield from statements(child)


def is_type_checking(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
