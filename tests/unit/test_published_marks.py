"""The outbox's marks of confirmed rows, made off the caller's thread (shared/delivery/
published_marks.py): every id handed over reaches the store, on another thread, and a store
that fails leaves the rows to the relay without raising at the caller."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import pytest

from shared.delivery.published_marks import PublishedMarks
from shared.store import Store


class MarkingStore:
    """Records each mark_published call: its ids and its thread; fails the first `fail`."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[list[int], int]] = []
        self.fail = fail
        self.called = threading.Event()

    def mark_published(self, ids: Sequence[int]) -> None:
        try:
            if self.fail:
                self.fail -= 1
                raise ConnectionResetError("the store went away")
            self.calls.append((list(ids), threading.get_ident()))
        finally:
            self.called.set()


def marks_on(store: MarkingStore) -> PublishedMarks:
    return PublishedMarks(cast(Store, store))


def test_the_ids_are_marked_on_another_thread() -> None:
    store = MarkingStore()
    marks = marks_on(store)
    marks.add([1, 2, 3])
    assert store.called.wait(5)
    ((ids, thread),) = store.calls
    assert ids == [1, 2, 3]
    assert thread != threading.get_ident()


def test_flush_marks_what_waits_on_the_callers_thread() -> None:
    store = MarkingStore()
    marks = marks_on(store)
    # Handed over without waking the thread: as if it were still busy with an earlier mark.
    marks._pending.extend([4, 5])
    marks.flush()
    assert store.calls == [([4, 5], threading.get_ident())]
    marks.flush()  # nothing waits: no empty mark
    assert len(store.calls) == 1


def test_a_failed_mark_is_logged_and_the_next_ids_are_still_marked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MarkingStore(fail=1)
    marks = marks_on(store)
    marks.add([7])
    assert store.called.wait(5)
    store.called.clear()
    marks.add([8])
    assert store.called.wait(5)
    assert store.calls[0][0] == [8]
    assert "1 messages left for the relay" in caplog.text


def test_nothing_handed_over_starts_no_thread() -> None:
    marks: Any = marks_on(MarkingStore())
    marks.add([])
    assert marks._thread is None


def test_flush_ends_the_marking_thread_and_a_later_mark_starts_another() -> None:
    store = MarkingStore()
    marks: Any = marks_on(store)
    marks.add([1])
    assert store.called.wait(5)
    thread = marks._thread
    assert thread is not None and thread.is_alive()
    marks.flush()
    assert not thread.is_alive()
    store.called.clear()
    marks.add([2])
    assert store.called.wait(5)
    assert [ids for ids, _ in store.calls] == [[1], [2]]
    marks.flush()
