"""SQLite stores for the unit tests: a few made once a session, their rows wiped between tests.

SQLAlchemy compiles a statement once per engine, and each `Store` has engines of its own: a
new store per test compiled the same statements again in every test, most of a store test's
time (issue 13). So the session keeps a small pool of stores, each on a file that holds the
schema; a test takes them in turn (`new_store`: one store, or several that share nothing), and
gets each one empty. A file, not SQLite's `:memory:`, which is one database per connection:
a test's threads must see one database.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.store import Store
from shared.store.tables import Base


@dataclass
class _Pool:
    directory: Path | None = None
    stores: list[tuple[Store, str, frozenset[str]]] = field(default_factory=list)
    #: How many stores the running test has taken.
    taken: int = 0


_pool = _Pool()


def new_store() -> Store:
    """A store of the running test's own, empty (the schema and no row)."""
    if _pool.taken == len(_pool.stores):
        _pool.stores.append(_make(len(_pool.stores)))
    store, _url, attributes = _pool.stores[_pool.taken]
    _pool.taken += 1
    _wipe(store, attributes)
    return store


def snapshot(store: Store) -> sqlite3.Connection:
    """A copy of the store's rows, in memory, for `restore` (SQLite's online backup)."""
    copy = sqlite3.connect(":memory:", check_same_thread=False)
    with contextlib.closing(store.engine.raw_connection()) as connection:
        _sqlite(connection).backup(copy)
    return copy


def restore(store: Store, copy: sqlite3.Connection) -> None:
    """Make the store's rows those of `copy`, as one test built them once: a fixture that
    writes the same rows for every test copies them instead."""
    with contextlib.closing(store.engine.raw_connection()) as connection:
        copy.backup(_sqlite(connection))


def _sqlite(connection: Any) -> sqlite3.Connection:
    found = connection.driver_connection
    assert isinstance(found, sqlite3.Connection)
    return found


def url_of(store: Store) -> str:
    """The URL of a store `new_store` gave (for settings that name the store)."""
    return next(url for pooled, url, _ in _pool.stores if pooled is store)


def hand_back() -> None:
    """The running test is done with its stores (tests/unit/conftest.py, after each test)."""
    _pool.taken = 0


def _make(number: int) -> tuple[Store, str, frozenset[str]]:
    if _pool.directory is None:
        _pool.directory = Path(tempfile.mkdtemp(prefix="unit-stores-"))
        atexit.register(shutil.rmtree, _pool.directory, ignore_errors=True)
    url = f"sqlite:///{_pool.directory / f'albums-{number}.db'}"
    store = Store(url)
    store.create_schema()
    return store, url, frozenset(vars(store))


def _wipe(store: Store, attributes: frozenset[str]) -> None:
    """Every row deleted, and what a test set on the store itself (a method replaced by a
    failing one) removed, so the next test finds it as `Store(url)` would make it."""
    for name in set(vars(store)) - attributes:
        delattr(store, name)
    # Ids start again at 1, as in a new file: no table has AUTOINCREMENT, whose counter
    # would survive its rows.
    with contextlib.closing(store.engine.raw_connection()) as connection:
        _sqlite(connection).executescript(_WIPE)


#: One script, on the driver's connection: through SQLAlchemy the ten statements took longer
#: than most tests.
_WIPE = "".join(
    ["BEGIN IMMEDIATE;"]
    + [f"DELETE FROM {table.name};" for table in reversed(Base.metadata.sorted_tables)]
    + ["COMMIT;"]
)
