"""Replaying dead letters: re-open what the store knows, send back what it does not.

An image's dead letter replays by re-opening the image in the store (the album goes back to
publishing, a fresh upload message goes out through the outbox, so a new settle and email
follow); a multi-photo post's re-opens the post (a new settle: the post, then its email).
An image that has not ended (left `uploading`, `queued` or `retrying` when the
delivery limit dead-lettered its message) has nothing to re-open: it gets a fresh upload
message, or it would wait for ever once its letter is gone (should its message exist after
all, the copy that comes second is a stale duplicate: `shared/contracts/fencing.py`). Anything else
(a settled event whose email died, poison) goes back to its work queue as a first attempt. Dead
letters are removed only after that succeeded. A stale letter (`shared/policies/stale_letters.py`:
the album page retried its image, which was uploaded since or has a newer message on its way) is
removed and sends nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from shared.broker.dead_letter_queue import DeadLetterQueue
from shared.contracts import topology
from shared.contracts.dead_letters import DeadLetter, requeue_message
from shared.delivery.outbox import Outbox
from shared.policies.stale_letters import stale_letters
from shared.store import Store
from shared.store.tables import LetterState
from shared.store.views import LetterView

#: Who the audit names for what the command line replays or purges.
CLI_OPERATOR = "command line"

#: A letter's work queue by the name its dead-queue header carries.
_WORK_QUEUES = {queue.name: queue for queue in topology.WORK_QUEUES}
QUEUES = {
    "uploader": topology.IMAGE_UPLOADS,
    "notifier": topology.ALBUM_SETTLED,
    "feed-posts": topology.FEED_POSTS,
}


@dataclass(frozen=True)
class Replayed:
    """How many dead letters a replay removed, and how many of them were stale (sent nothing)."""

    taken: int
    stale: int


class Replayer:
    def __init__(self, store: Store, outbox: Outbox, amqp_url: str) -> None:
        self._store = store
        self._outbox = outbox
        self._url = amqp_url

    def queue(self, name: str = "uploader") -> DeadLetterQueue:
        return DeadLetterQueue(self._url, QUEUES[name])

    def retry_album(self, album_id: str) -> int:
        """Queue the album's failed images again; returns how many were re-opened.

        The store knows which images failed, so this reads no dead letters: a request must not
        walk a queue of every album's letters. The album's letters stay until the CLI purges
        them or replays them, and then they are stale: `shared/policies/stale_letters.py`. Images
        re-opened while the album's window is full wait for their turn, and count."""
        reopened = self._store.retry_failed(album_id)
        # Re-opened is committed: the relay finishes what is not confirmed now.
        self._outbox.send_committed(reopened.rows)
        return reopened.images

    def stale(self, letters: list[DeadLetter], queue: str = "uploader") -> dict[int, str]:
        """The stale ones among `letters` of `queue`, by position, with why."""
        if QUEUES[queue] is not topology.IMAGE_UPLOADS:
            return {}
        return stale_letters(self._store, letters)

    def replay(self, chosen: Callable[[DeadLetter], bool], queue: str = "uploader") -> Replayed:
        dlq = self.queue(queue)
        stale: dict[int, str] = {}

        def send_back(letters: list[DeadLetter]) -> None:
            stale.update(self.stale(letters, queue))
            self._send_back(
                dlq.queue, [letter for letter in letters if letter.position not in stale]
            )

        taken = dlq.take(_each(chosen), before_ack=send_back)
        self._record(taken, LetterState.REPLAYED, dlq.name)
        return Replayed(len(taken), len(stale))

    def purge(self, chosen: Callable[[DeadLetter], bool], queue: str = "uploader") -> int:
        dlq = self.queue(queue)
        return self._record(dlq.take(_each(chosen)), LetterState.PURGED, dlq.name)

    def purge_stale(self, queue: str = "uploader") -> int:
        """Remove the letters that are stale (they would send nothing if replayed)."""
        dlq = self.queue(queue)
        return self._record(
            dlq.take(lambda letters: self.stale(letters, queue)), LetterState.PURGED, dlq.name
        )

    def _record(self, taken: list[DeadLetter], state: str, queue: str) -> int:
        """Mark what the command line took from the queue in the desk's index (and audit it),
        so that the desk does not offer those letters again."""
        ids = [letter.message_id for letter in taken if letter.message_id]
        if ids:
            action = "replay" if state == LetterState.REPLAYED else "purge"
            self._store.settle_letters(ids, state, CLI_OPERATOR, action, f"queue {queue}")
            self._store.mark_drained(ids)
        return len(taken)

    def replay_indexed(self, letters: Sequence[LetterView]) -> Replayed:
        """Replay letters from the desk's index (the store's copy of each letter), reading no
        queue: the same sending back as a replay from the queue. The queue's copies are left
        for the uploader's drain once the caller marked them replayed."""
        by_queue: dict[str, list[DeadLetter]] = defaultdict(list)
        for position, letter in enumerate(letters):
            by_queue[letter.queue].append(DeadLetter(position, letter.body, letter.headers))
        stale = 0
        for name, queued in by_queue.items():
            queue = _WORK_QUEUES.get(name, topology.IMAGE_UPLOADS)
            skip = stale_letters(self._store, queued) if queue is topology.IMAGE_UPLOADS else {}
            stale += len(skip)
            self._send_back(queue, [letter for letter in queued if letter.position not in skip])
        return Replayed(len(letters), stale)

    def _send_back(self, queue: topology.WorkQueue, letters: list[DeadLetter]) -> None:
        by_album: dict[str, set[int]] = defaultdict(set)
        posts: set[str] = set()
        raw = []
        for letter in letters:
            if queue is topology.IMAGE_UPLOADS and letter.album_id and letter.image_id:
                by_album[letter.album_id].add(letter.image_id)
            elif queue is topology.FEED_POSTS and letter.album_id:
                posts.add(letter.album_id)  # the store re-opens the post: a new settle
            else:
                raw.append(requeue_message(letter, queue))
        for album_id, image_ids in by_album.items():
            # Unfinished ones first: those re-opened next are unfinished too, and sent once.
            rows = [
                *self._store.resend_unfinished(album_id, image_ids),
                *self._store.reopen_failed(album_id, image_ids),
            ]
            if not self._outbox.send_rows(rows):
                raise RuntimeError("the broker did not confirm the replay; nothing was removed")
        for album_id in posts:
            if not self._outbox.send_rows(self._store.reopen_post(album_id)):
                raise RuntimeError("the broker did not confirm the replay; nothing was removed")
        self._outbox.send_unrecorded(raw)


def _each(chosen: Callable[[DeadLetter], bool]) -> Callable[[list[DeadLetter]], Collection[int]]:
    """A choice letter by letter, as the positions `DeadLetterQueue.take` removes."""
    return lambda letters: {letter.position for letter in letters if chosen(letter)}
