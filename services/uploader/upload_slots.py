"""The uploads one process runs at once, handed out first come, first served.

The uploader runs more handler threads than uploads (`handler.THREADS_PER_UPLOAD`), so images
wait here for a slot. They wait in the order they came: the work queue's order, which is how
albums take turns (docs/fair-turns.md). A plain semaphore wakes waiters in no promised order,
and one whose waiter looks up now and then (for a stop) loses its place to a newcomer: an
album's later image could overtake another album's earlier one.
"""

from __future__ import annotations

import collections
import threading
import time


class UploadSlots:
    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("at least one upload slot")
        self._free = count
        self._queue: collections.deque[object] = collections.deque()
        self._changed = threading.Condition()

    def acquire(self, timeout: float, ticket: object | None = None) -> object | None:
        """Wait up to `timeout` s for a slot, behind those who asked first. Returns None once
        the slot is held; else the ticket that keeps this caller's place, to pass to the next
        call (a caller that gives up calls `leave` with it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            if ticket is None:
                ticket = object()
                self._queue.append(ticket)
            while not (self._free and self._queue[0] is ticket):
                left = deadline - time.monotonic()
                if left <= 0:
                    return ticket
                self._changed.wait(left)
            self._queue.popleft()
            self._free -= 1
            self._changed.notify_all()  # the next in line may have a slot too
            return None

    @property
    def waiting(self) -> int:
        """How many wait in line."""
        with self._changed:
            return len(self._queue)

    def leave(self, ticket: object) -> None:
        """Give up a place in line (a caller that no longer waits)."""
        with self._changed:
            self._queue.remove(ticket)
            self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()
