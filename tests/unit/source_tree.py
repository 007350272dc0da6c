"""Our own modules' source, read and parsed once for the unit tests that check it (import
circles, docstrings): each of them parsed every file again."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "dev", "bench", "chaos")


@functools.cache
def modules() -> dict[Path, ast.Module]:
    """Every module of ours by its path, in path order."""
    paths = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in paths}


def statements(
    node: ast.AST, skip: Callable[[ast.AST], bool] = lambda _: False
) -> Iterator[ast.AST]:
    """The statements in `node` at any depth (in functions, classes, branches, handlers), but
    none in or under one `skip` picks, without walking expressions (no statement is in one)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case) and not skip(child):
            yield child
            yield from statements(child, skip)
