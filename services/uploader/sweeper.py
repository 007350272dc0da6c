"""Images whose message the broker lost: found while the work queue is empty, and sent again.

A confirmed message can still be gone: a broker that lost its disk, a queue purged by hand.
(P6 once seemed to show RabbitMQ 3.10.8 losing one after a crash; 140 SIGKILLs did not repeat
it: docs/confirmed-then-lost.md.) The outbox had done its part (the publish was confirmed), so
the image would wait for ever and its album never settle. While the work queue holds nothing
ready, an image that still waits (queued, or retrying past its time) and has not been touched
for a while has no message left anywhere: the sweeper writes it a new one. A duplicate, should
one exist after all, costs one ack (`start_attempt` knows the image ended or is in flight).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from shared.outbox import Outbox
from shared.store import Store

log = logging.getLogger(__name__)


class LostMessageSweeper:
    def __init__(self, store: Store, outbox: Outbox, ready_count: Callable[[], int],
                 lost_after: timedelta) -> None:
        self._store = store
        self._outbox = outbox
        self._ready_count = ready_count
        self._lost_after = lost_after

    def sweep_once(self) -> int:
        """Send again the messages of images quiet for `lost_after`; how many were sent."""
        if self._ready_count() > 0:  # their messages may still be in the queue
            return 0
        rows = self._store.requeue_lost(self._lost_after)
        if rows:
            log.warning("%d waiting images had no message left in the broker; sent again",
                        len(rows))
            self._outbox.publish(rows)
        return len(rows)

    def run(self, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            try:
                self.sweep_once()
            except Exception:  # the broker or the store may be away; the next round retries
                log.exception("lost-message sweep failed")

    def start(self, stop: threading.Event, every_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop, every_s), daemon=True,
                                  name="lost-message-sweeper")
        thread.start()
        return thread
