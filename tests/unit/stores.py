"""SQLite stores for the unit tests, each a copy of one file whose schema was created once.

Creating the schema costs about 20 ms a store, and the unit tests make some 600 of them; a
copy of the file costs about 1 ms. Each test still gets a file of its own (no rows shared,
threads see one database, unlike SQLite's per-connection `:memory:`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from shared.store import Store

_template: Path | None = None


def _schema_file() -> Path:
    """The file with the schema, made on first use and removed when the process ends."""
    global _template
    if _template is None:
        directory = Path(tempfile.mkdtemp(prefix="unit-schema-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "schema.db"
        store = Store(f"sqlite:///{path}")
        store.create_schema()
        # Closing the last connection folds the write-ahead log into the file copied.
        store.dispose()
        _template = path
    return _template


def store_url(directory: object, name: str = "albums.db") -> str:
    """The URL of a new SQLite file in `directory` that already holds the schema."""
    path = Path(str(directory)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_schema_file(), path)
    return f"sqlite:///{path}"


def new_store(directory: object, name: str = "albums.db") -> Store:
    """A store on a new file holding the schema (no create_schema call needed)."""
    return Store(store_url(directory, name))
