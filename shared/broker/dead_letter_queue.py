"""Reads dead letters without consuming them (what it does not take goes back when its
channel closes) and takes the ones an operator replays or purges."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator

import pika
from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.connection import parameters
from shared.contracts import topology
from shared.contracts.dead_letters import DeadLetter


class DeadLetterQueue:
    def __init__(self, url: str, queue: topology.WorkQueue) -> None:
        self._params = parameters(url)
        self.queue = queue
        self.name = topology.dead_letter_queue_name(queue)

    def browse(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; none is removed."""
        with self._session() as (_, letters):
            return [letter for letter, _ in letters]

    def take(
        self,
        choose: Callable[[list[DeadLetter]], Collection[int]],
        before_ack: Callable[[list[DeadLetter]], None] | None = None,
    ) -> list[DeadLetter]:
        """Remove the dead letters whose positions `choose` picks from them all (at once: it may
        ask the store about every letter in one read), after `before_ack` (a replay) has run
        without error; the others stay, in their order."""
        with self._session() as (channel, letters):
            positions = set(choose([letter for letter, _ in letters]))
            picked = [(letter, tag) for letter, tag in letters if letter.position in positions]
            if before_ack is not None:
                before_ack([letter for letter, _ in picked])
            for _, tag in picked:
                channel.basic_ack(tag)
            return [letter for letter, _ in picked]

    def sweep(
        self,
        limit: int,
        drop: Callable[[list[DeadLetter]], Collection[int]],
        move: Callable[[list[DeadLetter]], None] | None,
    ) -> tuple[int, int]:
        """Look at up to `limit` letters from the head: remove those `drop` picks, and move the
        others to the tail (`move` publishes their copies, confirmed, before any letter is
        acked), so that the next sweep looks at the next ones. Returns (removed, moved).
        Without `move`, only look: nothing is removed or moved."""
        with self._session(limit) as (channel, letters):
            positions = set(drop([letter for letter, _ in letters]))
            if move is None:
                return 0, 0
            kept = [letter for letter, _ in letters if letter.position not in positions]
            if kept:
                move(kept)
            for _, tag in letters:
                channel.basic_ack(tag)
            return len(letters) - len(kept), len(kept)

    @contextlib.contextmanager
    def _session(
        self,
        limit: int | None = None,
    ) -> Iterator[tuple[BlockingChannel, list[tuple[DeadLetter, int]]]]:
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            count = channel.queue_declare(self.name, passive=True).method.message_count
            if limit is not None:
                count = min(count, limit)
            letters = []
            for position in range(1, count + 1):
                method, props, body = channel.basic_get(self.name, auto_ack=False)
                if method is None:
                    break
                letters.append(
                    (
                        DeadLetter(position, body, props.headers or {}, props.message_id),
                        method.delivery_tag,
                    )
                )
            yield channel, letters
        finally:
            if connection.is_open:
                connection.close()  # what was not acked goes back to the queue
