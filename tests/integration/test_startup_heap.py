"""freeze_startup_heap: what a service holds when it has started is out of the garbage
collector's full collections, and the garbage its start left is freed, not kept.

Each check runs in a process of its own: a freeze is for the process's life, and the test
session's objects must stay collectable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

CHECK = """
import gc, weakref
from shared.process.runtime import freeze_startup_heap

class Node:
    other = None

def tracked(obj):
    return any(o is obj for o in gc.get_objects())

started = [Node() for _ in range(100)]  # say, a service model loaded at start
first, second = Node(), Node()
first.other, second.other = second, first  # a cycle left by the start: only gc frees it
gone = weakref.ref(first)
del first, second
frozen = gc.get_freeze_count()
freeze_startup_heap()
assert gone() is None, "the start's garbage was frozen, not freed"
assert gc.get_freeze_count() >= frozen + len(started), gc.get_freeze_count()
assert not tracked(started) and not tracked(started[0]), "still walked by collections"
later = Node()
later.other = later
gone = weakref.ref(later)
del later
gc.collect()
assert gone() is None, "what came after the freeze is no longer collected"
print("ok")
"""


def test_the_start_is_frozen_its_garbage_freed_and_later_garbage_still_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]
