"""freeze_startup_heap: what a service holds when it has started is out of the garbage
collector's full collections, and the garbage its start left is freed, not kept."""

from __future__ import annotations

import gc
import weakref

from shared.process.runtime import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _tracked(obj: object) -> bool:
    """Whether a collection of any generation would walk `obj`."""
    return any(o is obj for o in gc.get_objects())


def test_what_is_alive_at_the_freeze_is_no_longer_walked_by_collections() -> None:
    started = [Node() for _ in range(100)]  # say, a service model loaded at start
    assert _tracked(started)
    frozen = gc.get_freeze_count()
    freeze_startup_heap()
    assert gc.get_freeze_count() >= frozen + len(started)
    assert not _tracked(started)
    assert not any(_tracked(node) for node in started[:3])


def test_the_garbage_left_by_the_start_is_freed_first() -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle: only the collector frees it
    gone = weakref.ref(first)
    del first, second
    freeze_startup_heap()
    assert gone() is None


def test_what_is_made_after_the_freeze_is_still_collected() -> None:
    freeze_startup_heap()
    later = Node()
    later.other = later
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
