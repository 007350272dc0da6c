"""Images whose message is gone: found from the store alone, and sent again.

A confirmed message can still be gone: a broker that lost its disk, a queue purged by hand, a
retry copy lost the same way. (P6 once seemed to show RabbitMQ 3.10.8 losing one after a crash;
140 SIGKILLs did not repeat it: docs/confirmed-then-lost.md.) An uploader killed mid-upload
leaves its image `uploading`; if the message the broker would redeliver is gone too, or was
dead-lettered at the delivery limit, nothing else would ever move the image, and its album
would never settle. The sweeper writes such an image a new upload message through the outbox.

"Lost" is decided from the store, so the sweeper works under a steady backlog as well as with
an empty queue (`LOST_MESSAGE_AFTER_S` is `lost_after` below):

- A queued or retrying image entered the work queue at a known time (`queued_at`: when its
  message was written, or when its retry tier hands it back). The work queue is first in,
  first out, so once the queue has delivered a message that entered it `lost_after` later than
  this image's, this image's message should have come first: it is lost. Concretely: among
  the attempts started in the last `lost_after`, the newest queue entry taken; every image
  that entered the queue more than `lost_after` before that, and waited `lost_after`, is lost.
  A backlog of 10,000 is never doubled: the queue has not reached its messages yet.
- If no attempt started at all for `lost_after`, the store cannot tell a lost message from a
  stalled consumer (the pauses after a store outage, an open circuit breaker): only then is
  the broker asked. If the work queue holds nothing ready, every image that waited
  `lost_after` is lost; if it holds messages, nothing is (its backlog is not doubled), and the
  rule above takes over once the consumer moves again.
- An `uploading` image is lost once its lease lapsed (no live uploader renews it) and its
  attempt can no longer reach Facebook (attempt start + Graph timeout + margin) plus
  `lost_after`: its message, if it still existed, would have come back by then. The next
  attempt reads the album back first, so a photo the dead attempt sent is found, not sent
  twice.

All times are the database's (`shared/store/db_clock.py`). A message that was not lost
after all costs one ack: the two copies carry the same fencing number, the first starts the
next attempt and the second is then older than it (`shared/contracts/fencing.py`). Each image sent
again is touched, so it is not sent again before it has been quiet for `lost_after` again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from shared.delivery.outbox import Outbox
from shared.observability import metrics
from shared.process.periodic import start_periodic
from shared.store import Store

log = logging.getLogger(__name__)


class LostMessageSweeper:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        ready_count: Callable[[], int],
        lost_after: timedelta,
        in_flight_window: timedelta,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._ready_count = ready_count
        self._lost_after = lost_after
        self._in_flight_window = in_flight_window

    def sweep_once(self) -> int:
        """Send again the messages of images found lost; how many were sent."""
        rows = self._store.requeue_lost(
            self._lost_after, self._in_flight_window, queue_empty=self._queue_empty()
        )
        if rows:
            log.warning("%d images had no message left in the broker; sent again", len(rows))
            self._outbox.send_rows(rows)
            metrics.SWEEPER_RESENDS.inc(len(rows))
        return len(rows)

    def _queue_empty(self) -> bool:
        try:
            return self._ready_count() == 0
        except Exception:  # the broker is away: assume it still holds their messages
            log.warning("could not count the work queue's messages", exc_info=True)
            return False

    def start(self, stop: threading.Event, every_s: float) -> threading.Thread:
        return start_periodic("lost-message-sweeper", self.sweep_once, stop, every_s)
