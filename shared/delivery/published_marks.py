"""Marking confirmed outbox rows published off the caller's path, on one thread of its own.

Once its change is committed and the broker has confirmed its messages, a request has nothing
left to wait for: marking the rows published only keeps the relay from sending them again. So
the request hands the rows' ids over and answers; this thread marks them, those of every
request that came meanwhile in one transaction. A mark that comes late or fails costs a copy
(the relay sends a row still unmarked after its grace, and consumers are idempotent), never a
message: the rows were confirmed, and stay in the outbox until marked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from shared.store import Store

log = logging.getLogger(__name__)

#: The thread ends after this long with nothing to mark (the next mark starts another).
_IDLE_S = 30.0


class PublishedMarks:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: list[int] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, ids: Sequence[int]) -> None:
        """Mark these confirmed rows published soon; returns at once."""
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-marks", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self, wait_s: float = 5.0) -> None:
        """Mark what waits now, on the caller's thread, and end the marking thread (a process
        about to stop: nothing of it may be left running; a later `add` starts another)."""
        with self._lock:
            thread, self._stopping = self._thread, True
        self._wake.set()
        if thread is not None:
            thread.join(wait_s)
        self._mark_pending()
        with self._lock:
            self._stopping = False

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(_IDLE_S)
            self._wake.clear()
            with self._lock:
                if self._stopping:  # flush marks what is left, on its own thread
                    self._thread = None
                    return
            self._mark_pending()
            if not woken:
                with self._lock:
                    if not self._pending:
                        self._thread = None
                        return

    def _mark_pending(self) -> None:
        with self._lock:
            ids, self._pending = self._pending, []
        if not ids:
            return
        try:
            self._store.mark_published(ids)
        except Exception:  # the store failed after the broker confirmed: the relay finishes
            log.warning("outbox: %d messages left for the relay", len(ids), exc_info=True)
