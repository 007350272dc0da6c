"""Every exchange, queue, binding and argument of the system, declared in one place.

What an operator sees in the management UI:

- ``albums.work`` (direct) routes commands and events to the work queues:
  ``image.upload`` -> ``uploader.image-uploads``, ``album.settled`` -> ``notifier.album-settled``.
- ``albums.retry`` (direct) holds failed messages for a while: one TTL queue per delay tier,
  ``<work queue>.retry.<seconds>s``, each dead-lettering back into ``albums.work``. Every
  configured delay has a jittered twin tier (x1.25), so retries of a burst spread out.
- ``albums.dead`` (direct) keeps what will never succeed, with its reason in the headers:
  ``<work queue>.dead``. Nothing expires there; a full dead-letter queue refuses new ones loudly.

Names are plain functions of the work queue, so tests and tools derive them instead of repeating
strings. `declare` is idempotent and every service calls it at start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

WORK_EXCHANGE = "albums.work"
RETRY_EXCHANGE = "albums.retry"
DEAD_EXCHANGE = "albums.dead"

#: Dead letters wait for an operator; past this many the queue refuses (publisher sees a nack).
DEAD_LETTER_MAX_LENGTH = 1_000_000


@dataclass(frozen=True)
class WorkQueue:
    name: str
    routing_key: str


IMAGE_UPLOADS = WorkQueue("uploader.image-uploads", "image.upload")
ALBUM_SETTLED = WorkQueue("notifier.album-settled", "album.settled")
WORK_QUEUES = (IMAGE_UPLOADS, ALBUM_SETTLED)


#: Each delay d also gets a tier of d * JITTER (rounded up); a retry picks one of the two at
#: random, so a burst of failures does not come back as one burst.
JITTER = 1.25


def jittered(delay_s: int) -> tuple[int, ...]:
    return tuple(sorted({delay_s, math.ceil(delay_s * JITTER)}))


def retry_tiers(retry_delays: Iterable[int]) -> list[int]:
    """Every delay tier a queue needs: each configured delay and its jittered twin."""
    return sorted({tier for delay in retry_delays for tier in jittered(delay)})


def retry_queue_name(queue: WorkQueue, delay_s: int) -> str:
    return f"{queue.name}.retry.{delay_s}s"


def dead_letter_queue_name(queue: WorkQueue) -> str:
    return f"{queue.name}.dead"


def work_queue_arguments(delivery_limit: int) -> dict[str, Any]:
    # A quorum queue counts redeliveries; past the limit (a message that crashes its consumer
    # every time) it dead-letters at-least-once into albums.dead, which on 3.10 requires
    # reject-publish overflow.
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(queue: WorkQueue, delay_s: int) -> dict[str, Any]:
    # One TTL per queue: per-message TTLs in one queue would wait behind the head.
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_s * 1000,
        "x-dead-letter-exchange": WORK_EXCHANGE,
        "x-dead-letter-routing-key": queue.routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments() -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-max-length": DEAD_LETTER_MAX_LENGTH,
        "x-overflow": "reject-publish",
    }


class Declarer(Protocol):
    """The three AMQP declare calls, as pika's BlockingChannel spells them."""

    def exchange_declare(self, exchange: str, exchange_type: Any, durable: bool) -> Any: ...

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any]) -> Any: ...

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> Any: ...


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    exchange: str
    routing_key: str


def queue_specs(retry_delays: Iterable[int], delivery_limit: int) -> list[QueueSpec]:
    """Every queue with its arguments and its one binding."""
    specs: list[QueueSpec] = []
    for queue in WORK_QUEUES:
        specs.append(
            QueueSpec(queue.name, work_queue_arguments(delivery_limit), WORK_EXCHANGE,
                      queue.routing_key)
        )
        for delay in retry_tiers(retry_delays):
            name = retry_queue_name(queue, delay)
            specs.append(QueueSpec(name, retry_queue_arguments(queue, delay), RETRY_EXCHANGE, name))
        specs.append(
            QueueSpec(dead_letter_queue_name(queue), dead_letter_queue_arguments(), DEAD_EXCHANGE,
                      queue.routing_key)
        )
    return specs


def declare(channel: Declarer, retry_delays: Iterable[int], delivery_limit: int) -> None:
    """Declare the whole topology; safe to call again and from every service."""
    for exchange in (WORK_EXCHANGE, RETRY_EXCHANGE, DEAD_EXCHANGE):
        channel.exchange_declare(exchange=exchange, exchange_type="direct", durable=True)
    for spec in queue_specs(retry_delays, delivery_limit):
        channel.queue_declare(queue=spec.name, durable=True, arguments=spec.arguments)
        channel.queue_bind(queue=spec.name, exchange=spec.exchange, routing_key=spec.routing_key)
