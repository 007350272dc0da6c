"""The outbox relay: what a transaction recorded reaches the broker, now or once it is back.

A service publishes its freshly committed rows at once (`publish`); the relay thread picks up
whatever that missed (the broker was down, the process died between commit and publish).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.broker.errors import BrokerError
from shared.outgoing import Outgoing
from shared.store import OutboxMessage, Store

if TYPE_CHECKING:  # the adapter loads pika; the outbox itself needs none of it
    from shared.broker.publisher import Publisher

log = logging.getLogger(__name__)

#: Rows younger than this belong to the request or handler that wrote them.
DEFAULT_GRACE = timedelta(seconds=5)
#: A relay that claimed rows and died releases them after this long.
_LEASE = timedelta(seconds=30)


class Outbox:
    def __init__(self, store: Store, publisher: Publisher, timeout_s: float = 10.0,
                 grace: timedelta = DEFAULT_GRACE) -> None:
        self._store = store
        self._grace = grace
        self._publisher = publisher
        self._timeout_s = timeout_s

    def publish(self, rows: Sequence[OutboxMessage]) -> bool:
        """Publish committed rows with confirms; False if the relay must finish the job."""
        if not rows:
            return True
        try:
            self._publisher.publish([row.outgoing() for row in rows], timeout=self._timeout_s)
        except BrokerError as exc:
            log.warning("outbox: %d messages wait for the relay: %s", len(rows), exc)
            return False
        self._store.mark_published([row.id for row in rows])
        return True

    def publish_committed(self, rows: Sequence[OutboxMessage]) -> bool:
        """`publish` for a caller whose change is committed, so can no longer fail: it never
        raises. False if the relay must finish the job: not confirmed, or confirmed but not
        marked published (the relay then sends the rows again; consumers are idempotent)."""
        try:
            return self.publish(rows)
        except Exception:  # the store failed after the broker confirmed: the relay finishes
            log.warning("outbox: %d messages left for the relay", len(rows), exc_info=True)
            return False

    def publish_now(self, messages: Sequence[Outgoing]) -> None:
        """Publish messages that need no record (raises BrokerError if not confirmed)."""
        self._publisher.publish(messages, timeout=self._timeout_s)

    def relay_once(self) -> int:
        rows = self._store.claim_unpublished(self._grace, _LEASE)
        if not rows:
            return 0
        if not self.publish(rows):
            # Not confirmed (the broker is away): the lease only guards against a relay that
            # dies holding rows, so give them back and the next round retries at once.
            self._store.release_outbox_claims([row.id for row in rows])
            return 0
        log.info("outbox: relayed %d messages", len(rows))
        return len(rows)

    def run_relay(self, stop: threading.Event, every_s: float = 2.0) -> None:
        while not stop.wait(every_s):
            try:
                self.relay_once()
            except Exception:  # the store may be down; try again next round
                log.exception("outbox relay round failed")

    def start_relay(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run_relay, args=(stop,), name="outbox-relay",
                                  daemon=True)
        thread.start()
        return thread
