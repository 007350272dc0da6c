"""The dead-letter queues' drain: removes the letters the desk replayed or purged, and indexes
the ones the desk has not seen, a bounded batch per queue per pass.

The desk acts on the store's index of letters and never reads a queue in a request, so the
queue still holds a letter after its replay or purge (a replayed image's letter is stale then:
`shared/policies/stale_letters.py`). Each pass looks at up to `batch` letters from each dead-letter
queue's head: a letter whose index row is replayed or purged is removed (and its row marked
drained); one the index lacks (dead-lettered by the broker at the delivery limit, or poison
the consumer dead-lettered without the store) is indexed; the waiting ones are moved to the
tail (a confirmed copy, then the ack), so the next pass looks at the next batch. Over passes
the whole queue is covered; the queue never grows from the desk's actions. While the index
holds no replayed or purged letter left to remove, a pass only looks at the head's batch (and
indexes it) and moves nothing: a crash mid-move could leave a letter twice.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.broker.dead_letter_queue import DeadLetterQueue
from shared.contracts import topology
from shared.contracts.dead_letters import QUEUE_HEADER, REASON_HEADER, DeadLetter, own_headers
from shared.contracts.outgoing import Outgoing
from shared.process.periodic import start_periodic
from shared.store import Store
from shared.store.tables import LetterState

log = logging.getLogger(__name__)

_HANDLED = frozenset({LetterState.REPLAYED, LetterState.PURGED})


@dataclass(frozen=True)
class Drained:
    removed: int
    moved: int
    indexed: int


class DeadLetterDrain:
    def __init__(
        self,
        store: Store,
        queues: Sequence[DeadLetterQueue],
        publish: Callable[[Sequence[Outgoing]], None],
        batch: int,
    ) -> None:
        self._store = store
        self._queues = queues
        self._publish = publish  # confirmed, or raises: then nothing of the batch is acked
        self._batch = batch

    def drain_once(self) -> Drained:
        removed = moved = indexed = 0
        # Moving letters risks a duplicate (a crash between the copy's confirm and the ack):
        # only when the desk left letters to remove; otherwise a pass only looks and indexes.
        rotate = self._store.has_undrained_letters()
        for dlq in self._queues:
            found: list[int] = []
            gone, kept = dlq.sweep(
                self._batch,
                functools.partial(self._drop, dlq, found),
                functools.partial(self._move, dlq) if rotate else None,
            )
            removed, moved, indexed = removed + gone, moved + kept, indexed + sum(found)
        if removed or indexed:
            log.info(
                "dead-letter drain: removed %d replayed or purged letters, indexed %d",
                removed,
                indexed,
            )
        return Drained(removed, moved, indexed)

    def _move(self, dlq: DeadLetterQueue, letters: list[DeadLetter]) -> None:
        self._publish([_copy(dlq.queue, letter) for letter in letters])

    def _drop(
        self, dlq: DeadLetterQueue, indexed: list[int], letters: list[DeadLetter]
    ) -> set[int]:
        states = self._store.letter_states([x.message_id for x in letters if x.message_id])
        unknown = [
            _copy(dlq.queue, x) for x in letters if x.message_id and x.message_id not in states
        ]
        if unknown:
            self._store.index_dead_letters(unknown)
            indexed.append(len(unknown))
        drop = [x for x in letters if states.get(x.message_id or "") in _HANDLED]
        self._store.mark_drained([x.message_id for x in drop if x.message_id])
        return {x.position for x in drop}

    def start(self, stop: threading.Event, every_s: float) -> threading.Thread:
        # A failed pass removes nothing of its batch: the letters are moved, not taken.
        return start_periodic("dead-letter-drain", self.drain_once, stop, every_s)


def _copy(queue: topology.WorkQueue, letter: DeadLetter) -> Outgoing:
    """The letter as it goes back to its dead-letter queue's tail: its own headers, with the
    reason and queue the broker's x-death said (RabbitMQ ignores x-death from clients)."""
    headers = {
        QUEUE_HEADER: queue.name,
        **own_headers(letter.headers),
        REASON_HEADER: letter.reason,
    }
    return Outgoing(
        topology.DEAD_EXCHANGE,
        queue.routing_key,
        letter.body,
        headers=headers,
        **({"message_id": letter.message_id} if letter.message_id else {}),
    )
