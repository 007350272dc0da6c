"""The outbox relay: what a transaction recorded reaches the broker, now or once it is back.

A service publishes its freshly committed rows at once (`send_rows`); the relay thread picks up
whatever that missed (the broker was down, the process died between commit and publish). A
request that publishes after its commit (`send_committed`) leaves marking the confirmed rows
published to a thread of its own (`published_marks.py`), so its answer waits for the broker's
confirms and no second transaction.

Each row's outcome is its own: a row the broker confirmed is marked published even when another
row of the same batch was refused, so no consumer sees it twice for its neighbour's sake. A
refused row (a nack, or no queue took it) keeps its error and waits out a backoff that doubles
up to a few minutes (`shared/store/outbox_backoff.py`), logged at warning each time; a row that
met no broker at all (no connection, no confirm in time) goes to the next relay round at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.broker.errors import Refused
from shared.contracts import topology
from shared.contracts.outgoing import Outgoing
from shared.delivery.published_marks import PublishedMarks
from shared.observability import log_context
from shared.store import OutboxMessage, Store

if TYPE_CHECKING:  # the adapter loads pika; the outbox itself needs none of it
    from shared.broker.publisher import Publisher

log = logging.getLogger(__name__)

#: Rows younger than this belong to the request or handler that wrote them.
DEFAULT_GRACE = timedelta(seconds=5)
#: A relay that claimed rows and died releases them after this long.
_LEASE = timedelta(seconds=30)


@dataclass
class Outcomes:
    """A batch's rows sorted by what the broker did with each."""

    confirmed: list[int] = field(default_factory=list)
    #: Row id: what the broker said; these back off.
    refused: dict[int, str] = field(default_factory=dict)
    #: Row id: why it did not go through (no connection, no confirm); these go again soon.
    unsent: dict[int, str] = field(default_factory=dict)


def sort_outcomes(
    rows: Sequence[OutboxMessage], results: Sequence[BaseException | None]
) -> Outcomes:
    """Pair each row with its publish's result (None: confirmed)."""
    outcomes = Outcomes()
    for row, result in zip(rows, results, strict=True):
        if result is None:
            outcomes.confirmed.append(row.id)
        elif isinstance(result, Refused):
            outcomes.refused[row.id] = str(result)
        else:
            outcomes.unsent[row.id] = str(result)
    return outcomes


def _log_milestones(rows: Sequence[OutboxMessage], confirmed: Collection[int]) -> None:
    """A line for each confirmed message that marks an album's story (its dead letters, its
    settle, its feed post), with the album's ids and trace read off the message itself: the
    relay sends rows outside the handler that wrote them. Upload requests, one per image and
    each followed by its own lines, are left out."""
    sent = set(confirmed)
    for row in rows:
        if row.id not in sent or (
            row.exchange == topology.WORK_EXCHANGE
            and row.routing_key == topology.IMAGE_UPLOADS.routing_key
        ):
            continue
        what = "dead letter" if row.exchange == topology.DEAD_EXCHANGE else row.routing_key
        with log_context.bound_to_message(row.body, row.headers, row.message_id):
            log.info("outbox: sent %s", what)


class Outbox:
    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        timeout_s: float = 10.0,
        grace: timedelta = DEFAULT_GRACE,
        relays: Collection[str] | None = None,
    ) -> None:
        """`relays`: the exchanges whose rows this process's relay sends (None: all). The
        API's broker user may write to the work exchange only, so it leaves the uploader's
        dead letters to the uploader's relay rather than have the broker refuse them."""
        self._relays = relays
        self._store = store
        self._grace = grace
        self._publisher = publisher
        self._timeout_s = timeout_s
        self._marks = PublishedMarks(store)

    def broker_connected(self, wait_s: float) -> bool:
        """Whether the publisher holds a broker connection (waiting up to `wait_s`)."""
        return self._publisher.connected(wait_s)

    def send_rows(self, rows: Sequence[OutboxMessage]) -> bool:
        """Publish committed rows with confirms and mark the confirmed ones published; True if
        all were, False if the relay must finish the job (refused rows after their backoff)."""
        if not rows:
            return True
        outcomes = self._send(rows)
        return len(outcomes.confirmed) == len(rows)

    def _send(
        self,
        rows: Sequence[OutboxMessage],
        mark: Callable[[Sequence[int]], None] | None = None,
    ) -> Outcomes:
        """Publish the rows; `mark` marks the confirmed ones published (the store, now)."""
        results = self._publisher.publish_outcomes(
            [row.outgoing() for row in rows], timeout=self._timeout_s
        )
        outcomes = sort_outcomes(rows, results)
        (mark or self._store.mark_published)(outcomes.confirmed)
        _log_milestones(rows, outcomes.confirmed)
        for retry in self._store.record_refused(outcomes.refused):
            log.warning(
                "outbox: the broker refused message %s (exchange %r, routing key %r), "
                "%d time(s); next try at %s UTC: %s",
                retry.message_id,
                retry.exchange,
                retry.routing_key,
                retry.attempts,
                retry.next_attempt_at.isoformat(timespec="seconds"),
                retry.last_error,
            )
        if outcomes.unsent:
            log.warning(
                "outbox: %d messages wait for the relay: %s",
                len(outcomes.unsent),
                next(iter(outcomes.unsent.values())),
            )
        return outcomes

    def send_committed(self, rows: Sequence[OutboxMessage]) -> bool:
        """`send_rows` for a caller whose change is committed, so can no longer fail: it never
        raises, and the confirmed rows are marked published just after, off the caller's path
        (a mark that fails leaves them to the relay, which sends copies: consumers are
        idempotent). True once the broker confirmed every row; False if the relay must send
        some (not confirmed, or refused and waiting out its backoff)."""
        if not rows:
            return True
        try:
            outcomes = self._send(rows, mark=self._marks.add)
        except Exception:  # the store failed recording a refusal: the relay finishes
            log.warning("outbox: %d messages left for the relay", len(rows), exc_info=True)
            return False
        return len(outcomes.confirmed) == len(rows)

    def flush_marks(self) -> None:
        """Mark the confirmed rows still waiting for it now (a process about to stop)."""
        self._marks.flush()

    def send_unrecorded(self, messages: Sequence[Outgoing]) -> None:
        """Publish messages that need no record (raises BrokerError if not confirmed)."""
        self._publisher.publish_confirmed(messages, timeout=self._timeout_s)

    def relay_once(self) -> int:
        """One round: publish the rows due; returns how many were confirmed."""
        rows = self._store.claim_unpublished(self._grace, _LEASE, exchanges=self._relays)
        if not rows:
            return 0
        outcomes = self._send(rows)
        if outcomes.unsent:
            # Not confirmed (the broker is away): the lease only guards against a relay that
            # dies holding rows, so give them back and the next round retries at once.
            self._store.release_outbox_claims(list(outcomes.unsent))
        if outcomes.confirmed:
            log.info("outbox: relayed %d messages", len(outcomes.confirmed))
        return len(outcomes.confirmed)

    def run_relay(self, stop: threading.Event, every_s: float = 2.0) -> None:
        while not stop.wait(every_s):
            try:
                self.relay_once()
            except Exception:  # the store may be down; try again next round
                log.exception("outbox relay round failed")

    def start_relay(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self.run_relay, args=(stop,), name="outbox-relay", daemon=True
        )
        thread.start()
        return thread
