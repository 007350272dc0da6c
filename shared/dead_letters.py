"""Dead letters: what will never succeed, kept with a reason an operator can read and replay."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared import topology
from shared.broker import Outgoing

REASON_HEADER = "dead-reason"
CODE_HEADER = "dead-code"
ATTEMPTS_HEADER = "dead-attempts"
AT_HEADER = "dead-at"
QUEUE_HEADER = "dead-queue"


def dead_letter(queue: topology.WorkQueue, body: bytes, headers: Mapping[str, Any],
                reason: str, code: int | None, attempts: int) -> Outgoing:
    """The message as it arrived, plus why, when, and after how many attempts it died."""
    return Outgoing(topology.DEAD_EXCHANGE, queue.routing_key, body, headers={
        **headers,
        REASON_HEADER: reason[:1000],
        CODE_HEADER: code,
        ATTEMPTS_HEADER: attempts,
        AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
        QUEUE_HEADER: queue.name,
    })
