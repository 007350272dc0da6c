"""Dead letters: what will never succeed, kept with a reason an operator can read and replay.

A dead letter is the message as it arrived plus `dead-*` headers saying why, when, and after
how many attempts it died. `DeadLetterQueue` reads them without consuming (what it does not
take goes back when its channel closes) and takes the ones an operator replays or purges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from shared import messages, topology
from shared.broker import Outgoing, parameters

REASON_HEADER = "dead-reason"
CODE_HEADER = "dead-code"
ATTEMPTS_HEADER = "dead-attempts"
AT_HEADER = "dead-at"
QUEUE_HEADER = "dead-queue"


def dead_letter(queue: topology.WorkQueue, body: bytes, headers: Mapping[str, Any],
                reason: str, code: int | None, attempts: int) -> Outgoing:
    """The message as it arrived, plus why, when, and after how many attempts it died."""
    return Outgoing(topology.DEAD_EXCHANGE, queue.routing_key, body, headers={
        **own_headers(headers),
        REASON_HEADER: reason[:1000],
        CODE_HEADER: code,
        ATTEMPTS_HEADER: attempts,
        AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
        QUEUE_HEADER: queue.name,
    })


def own_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers a copy keeps: ours, not the broker's `x-` ones (x-death holds timestamps,
    grows with every pass through a retry tier, and RabbitMQ 3.13+ ignores it from clients)."""
    return {key: value for key, value in headers.items() if not key.startswith("x-")}


@dataclass(frozen=True)
class DeadLetter:
    position: int
    body: bytes
    headers: Mapping[str, Any]

    @property
    def reason(self) -> str:
        if REASON_HEADER in self.headers:
            return str(self.headers[REASON_HEADER])
        # Dead-lettered by the broker itself (the delivery limit): x-death says why.
        deaths = self.headers.get("x-death") or [{}]
        return f"broker: {deaths[0].get('reason', 'unknown')}"

    @property
    def album_id(self) -> str | None:
        try:
            return messages.decode(self.body).album_id
        except messages.PoisonMessage:
            return None

    @property
    def image_id(self) -> int | None:
        try:
            message = messages.decode(self.body)
        except messages.PoisonMessage:
            return None
        return message.image_id if isinstance(message, messages.ImageUploadRequested) else None

    def summary(self) -> dict[str, Any]:
        return {"position": self.position, "album_id": self.album_id, "image_id": self.image_id,
                "reason": self.reason, "code": self.headers.get(CODE_HEADER),
                "attempts": self.headers.get(ATTEMPTS_HEADER),
                "at": self.headers.get(AT_HEADER), "bytes": len(self.body)}


class DeadLetterQueue:
    def __init__(self, url: str, queue: topology.WorkQueue) -> None:
        self._params = parameters(url)
        self.queue = queue
        self.name = topology.dead_letter_queue_name(queue)

    def browse(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; none is removed."""
        with self._session() as (_, letters):
            return [letter for letter, _ in letters]

    def take(self, chosen: Callable[[DeadLetter], bool],
             before_ack: Callable[[list[DeadLetter]], None] | None = None) -> list[DeadLetter]:
        """Remove the chosen dead letters, after `before_ack` (a replay) has run without error;
        the others stay, in their order."""
        with self._session() as (channel, letters):
            picked = [(letter, tag) for letter, tag in letters if chosen(letter)]
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


def requeue_message(letter: DeadLetter, queue: topology.WorkQueue) -> Outgoing:
    """A dead letter sent back to its work queue as a first attempt, without its dead-* marks."""
    headers = {k: v for k, v in own_headers(letter.headers).items()
               if not k.startswith("dead-") and k != "album-attempt"}
    return Outgoing(topology.WORK_EXCHANGE, queue.routing_key, letter.body, headers=headers)
