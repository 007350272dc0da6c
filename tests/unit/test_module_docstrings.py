"""Every module of ours opens with a docstring that says what it is for (issue 13)."""

from __future__ import annotations

from tests.unit.source_tree import ROOT, modules


def test_every_module_says_what_it_is_for() -> None:
    missing = [
        str(path.relative_to(ROOT)) for path, module in modules().items() if not module.docstring
    ]
    assert missing == []
