"""Dead letters: what will never succeed, kept with a reason an operator can read and replay.

A dead letter is the message as it arrived plus `dead-*` headers saying why, when, and after
how many attempts it died. The broker adapter's
`shared.broker.dead_letter_queue` reads them for the operator's tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing

REASON_HEADER = "dead-reason"
CODE_HEADER = "dead-code"
ATTEMPTS_HEADER = "dead-attempts"
AT_HEADER = "dead-at"
QUEUE_HEADER = "dead-queue"

#: The reasons an image's object could not be read for good: the uploader gives them
#: (services/uploader/failures.py), the desk groups them apart ("bucket"), the pages word them.
NOT_IN_BUCKET = "not found in the bucket"
BUCKET_DENIED = "access to the bucket was denied"
BUCKET_REFUSED = "the bucket refused the request"
BUCKET_REASONS = (NOT_IN_BUCKET, BUCKET_DENIED, BUCKET_REFUSED)


def dead_letter(
    queue: topology.WorkQueue,
    body: bytes,
    headers: Mapping[str, Any],
    reason: str,
    code: int | None,
    attempts: int,
) -> Outgoing:
    """The message as it arrived, plus why, when, and after how many attempts it died."""
    return Outgoing(
        topology.DEAD_EXCHANGE,
        queue.routing_key,
        body,
        headers={
            **own_headers(headers),
            REASON_HEADER: reason[:1000],
            CODE_HEADER: code,
            ATTEMPTS_HEADER: attempts,
            AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
            QUEUE_HEADER: queue.name,
        },
    )


def own_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers a copy keeps: ours, not the broker's `x-` ones (x-death holds timestamps,
    grows with every pass through a retry tier, and RabbitMQ 3.13+ ignores it from clients)."""
    return {key: value for key, value in headers.items() if not key.startswith("x-")}


@dataclass(frozen=True)
class DeadLetter:
    position: int
    body: bytes
    headers: Mapping[str, Any]
    #: The AMQP message id: the key of the desk's index (shared/store/dead_letter_index.py).
    message_id: str | None = None

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
        return {
            "position": self.position,
            "id": self.message_id,
            "album_id": self.album_id,
            "image_id": self.image_id,
            "reason": self.reason,
            "code": self.headers.get(CODE_HEADER),
            "attempts": self.headers.get(ATTEMPTS_HEADER),
            "at": self.headers.get(AT_HEADER),
            "bytes": len(self.body),
        }


def requeue_message(letter: DeadLetter, queue: topology.WorkQueue) -> Outgoing:
    """A dead letter sent back to its work queue as a first attempt, without its dead-* marks."""
    headers = {
        k: v
        for k, v in own_headers(letter.headers).items()
        if not k.startswith("dead-") and k != "album-attempt"
    }
    return Outgoing(topology.WORK_EXCHANGE, queue.routing_key, letter.body, headers=headers)
