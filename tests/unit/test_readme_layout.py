"""README's Layout section matches the tree: every folder and file it names exists, and every
package under shared/ and services/ has its entry (issue 13: the folders show the layers)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A file the Layout names: a word ending in one of the extensions the tree's files have.
FILE_NAME = re.compile(r"(?<![\w./-])([\w/-]+\.(?:py|json|yml|lock|in))\b")


def layout_entries() -> dict[str, str]:
    """Each entry of the Layout block: its folder, and its description (continuation lines
    are indented, an entry's first line is not)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout\n\n```\n") + len("## Layout\n\n```\n")
    block = text[start : text.index("```\n", start)]
    entries: dict[str, str] = {}
    folder = ""
    for line in block.splitlines():
        if not line.startswith(" "):
            folder, _, line = line.partition(" ")
            entries[folder] = ""
        entries[folder] += " " + line.strip()
    return entries


def test_every_folder_named_exists() -> None:
    missing = [folder for folder in layout_entries() if not (ROOT / folder).is_dir()]
    assert missing == []


def test_every_file_named_exists_in_its_folder() -> None:
    missing = [
        f"{folder}: {name}"
        for folder, description in layout_entries().items()
        for name in FILE_NAME.findall(description)
        if not (ROOT / folder / name).exists() and not (ROOT / name).exists()
    ]
    assert missing == []


def test_every_package_has_an_entry() -> None:
    named = {folder.rstrip("/") for folder in layout_entries()}
    packages = sorted(
        str(init.parent.relative_to(ROOT))
        for root in ("shared", "services")
        for init in (ROOT / root).glob("*/**/__init__.py")
    )
    assert [package for package in packages if package not in named] == []
