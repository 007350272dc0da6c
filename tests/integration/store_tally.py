"""What a block of a test makes the store do on the test's own thread: the statements sent, the
transactions begun, the rows SELECTs handed back and, on SQLite, the virtual machine's steps.
Counting rather than timing: the figures hold on a loaded machine (issue 14's P1, P7)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared.store import Store

#: How many SQLite VM instructions one progress-handler call stands for.
_STEP = 100


@dataclass
class Tally:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0
    #: Rows the database handed back to SELECTs (PostgreSQL reports them; SQLite does not).
    rows_read: int = 0
    #: SQLite's virtual machine instructions, in steps of _STEP.
    vm_steps: int = 0


def _engines(store: Store) -> set[Engine]:
    # The store's writer and, on SQLite, its snapshot reader.
    return {store.engine, store._read_engine}


class _Counter:
    """The store's engines' listeners, installed once and never removed: removing a listener
    while another thread (the marks, the relay) runs the same event raises in SQLAlchemy
    ("deque mutated during iteration"), and that thread's transaction fails. They count for
    `tally`'s thread while a tally is open, and do nothing otherwise."""

    def __init__(self, store: Store) -> None:
        self.tally: Tally | None = None
        self.thread: int | None = None
        self.watched: list[Any] = []  # the sqlite3 connections given a progress handler
        for engine in _engines(store):
            event.listen(engine, "before_cursor_execute", self.on_statement)
            event.listen(engine, "after_cursor_execute", self.after_statement)
            event.listen(engine, "begin", self.on_begin)

    def counting(self) -> Tally | None:
        return self.tally if threading.get_ident() == self.thread else None

    def on_statement(self, _conn: Any, _cursor: Any, statement: str, *_a: Any, **_k: Any) -> None:
        if (counted := self.counting()) is not None:
            counted.statements.append(statement)

    def after_statement(self, _conn: Any, cursor: Any, statement: str, *_a: Any, **_k: Any) -> None:
        counted = self.counting()
        if counted is not None and statement.lstrip().upper().startswith("SELECT"):
            counted.rows_read += max(0, cursor.rowcount)

    def on_begin(self, conn: Any) -> None:
        if (counted := self.counting()) is None:
            return
        counted.transactions += 1
        dbapi = conn.connection.dbapi_connection
        if hasattr(dbapi, "set_progress_handler"):  # sqlite3
            dbapi.set_progress_handler(self.step, _STEP)
            self.watched.append(dbapi)

    def step(self) -> int:
        if (counted := self.counting()) is not None:
            counted.vm_steps += 1
        return 0


#: One counter per store, gone with it.
_counters: weakref.WeakKeyDictionary[Store, _Counter] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def tally(store: Store) -> Iterator[Tally]:
    """Count what the current thread makes the store do inside the block."""
    counter = _counters.get(store)
    if counter is None:
        counter = _counters[store] = _Counter(store)
    counter.tally, counter.thread = Tally(), threading.get_ident()
    try:
        yield counter.tally
    finally:
        counter.tally = counter.thread = None
        for dbapi in counter.watched:
            dbapi.set_progress_handler(None, 0)
        counter.watched.clear()
