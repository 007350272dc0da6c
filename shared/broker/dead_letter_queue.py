"""Reads dead letters without consuming them (what it does not take goes back when its
channel closes) and takes the ones an operator replays or purges."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator

import pika
from pika.adapters.blocking_connection import BlockingChannel

from shared import topology
from shared.broker.connection import parameters
from shared.dead_letters import DeadLetter


class DeadLetterQueue:
    def __init__(self, url: str, queue: topology.WorkQueue) -> None:
        self._params = parameters(url)
        self.queue = queue
        self.name = topology.dead_letter_queue_name(queue)

    def browse(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; none is removed."""
        with self._session() as (_, letters):
            return [letter for letter, _ in letters]

    def take(self, choose: Callable[[list[DeadLetter]], Collection[int]],
             before_ack: Callable[[list[DeadLetter]], None] | None = None) -> list[DeadLetter]:
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

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[BlockingChannel, list[tuple[DeadLetter, int]]]]:
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            count = channel.queue_declare(self.name, passive=True).method.message_count
            letters = []
            for position in range(1, count + 1):
                method, props, body = channel.basic_get(self.name, auto_ack=False)
                if method is None:
                    break
                letters.append((DeadLetter(position, body, props.headers or {}),
                                method.delivery_tag))
            yield channel, letters
        finally:
            if connection.is_open:
                connection.close()  # what was not acked goes back to the queue
