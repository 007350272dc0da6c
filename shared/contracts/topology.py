"""Every exchange, queue, binding and argument of the system, declared in one place.

What an operator sees in the management UI:

- ``albums.work`` (direct) routes commands and events to the work queues:
  ``image.upload`` -> ``uploader.image-uploads``, ``album.settled`` -> ``notifier.album-settled``,
  ``feed.post`` -> ``uploader.feed-posts``.
- ``albums.retry`` (direct) holds failed messages for a while: one TTL queue per delay tier,
  ``<work queue>.retry.<seconds in 5 digits>s`` (``.retry.00005s``: they sort by delay), each
  dead-lettering back into ``albums.work``. Every configured delay has a jittered twin tier
  (x1.25), so retries of a burst spread out.
- ``albums.dead`` (direct) keeps what will never succeed, with its reason in the headers:
  ``<work queue>.dead``. Nothing expires there; a full dead-letter queue refuses new ones loudly.

Queue arguments hold only what never changes for a queue's name (its type, where it
dead-letters, a tier's TTL: a tier is named by its delay), because RabbitMQ refuses (406) to
redeclare a queue with other arguments. What an operator may tune (the work queues' delivery
limit, the dead-letter queues' length) lives in broker policies (`policy_specs`), which the
broker applies to existing queues as they change (docs/broker-policies.md).

Names are plain functions of the work queue, so tests and tools derive them instead of repeating
strings. Declaring is idempotent; every service declares at start and on each reconnect
(through `shared.broker.declarer`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

WORK_EXCHANGE = "albums.work"
RETRY_EXCHANGE = "albums.retry"
DEAD_EXCHANGE = "albums.dead"

#: Arguments that older versions put on queues and policies carry now. A queue still holding
#: one is used as it is (`differs_only_in_policy_keys`); the broker then applies the lower of the
#: argument and the policy (RabbitMQ 3.10's quorum queues: docs/broker-policies.md).
POLICY_CARRIED_ARGUMENTS = frozenset({"x-delivery-limit", "x-max-length"})
#: Our policies' priority: an operator's own policy on these queues needs a higher one (and then
#: replaces ours whole: a queue follows one policy, so it must restate our keys).
POLICY_PRIORITY = 1


@dataclass(frozen=True)
class WorkQueue:
    name: str
    routing_key: str


IMAGE_UPLOADS = WorkQueue("uploader.image-uploads", "image.upload")
ALBUM_SETTLED = WorkQueue("notifier.album-settled", "album.settled")
#: The second job of an album sent as one multi-photo post: the post itself, once it settled.
FEED_POSTS = WorkQueue("uploader.feed-posts", "feed.post")
WORK_QUEUES = (IMAGE_UPLOADS, ALBUM_SETTLED, FEED_POSTS)


#: Each delay d also gets a tier of d * JITTER (rounded up); a retry picks one of the two at
#: random, so a burst of failures does not come back as one burst.
JITTER = 1.25


def jittered(delay_s: int) -> tuple[int, ...]:
    return tuple(sorted({delay_s, math.ceil(delay_s * JITTER)}))


def retry_tiers(retry_delays: Iterable[int]) -> list[int]:
    """Every delay tier a queue needs: each configured delay and its jittered twin."""
    return sorted({tier for delay in retry_delays for tier in jittered(delay)})


#: A tier's seconds, zero-padded to this many digits, so that tiers sort by their delay.
TIER_DIGITS = 5
#: The longest delay whose jittered twin still fits TIER_DIGITS (ceil(79999 * 1.25) = 99999).
MAX_RETRY_DELAY_S = 79999


def retry_queue_name(queue: WorkQueue, delay_s: int) -> str:
    return f"{queue.name}.retry.{delay_s:0{TIER_DIGITS}d}s"


def dead_letter_queue_name(queue: WorkQueue) -> str:
    return f"{queue.name}.dead"


def work_queue_arguments() -> dict[str, Any]:
    # A quorum queue counts redeliveries; past the limit (a message that crashes its consumer
    # every time; the limit is a policy) it dead-letters at-least-once into albums.dead, which
    # on 3.10 requires reject-publish overflow.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(queue: WorkQueue, delay_s: int) -> dict[str, Any]:
    # One TTL per queue: per-message TTLs in one queue would wait behind the head. The TTL and
    # the way back are arguments, not a policy: they never change for the tier's name, and a
    # tier no longer configured keeps returning what it holds to its work queue.
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_s * 1000,
        "x-dead-letter-exchange": WORK_EXCHANGE,
        "x-dead-letter-routing-key": queue.routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments() -> dict[str, Any]:
    # Its length is a policy; past it the queue refuses (the publisher sees a nack).
    return {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
    }


def differs_only_in_policy_keys(wanted: dict[str, Any], existing: dict[str, Any]) -> bool:
    """Whether a queue declared with `existing` arguments can serve as one declared with
    `wanted`: they differ at most in arguments that policies carry now."""

    def fixed(arguments: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in arguments.items() if k not in POLICY_CARRIED_ARGUMENTS}

    return fixed(wanted) == fixed(existing)


def leftover_arguments(existing: dict[str, Any]) -> dict[str, Any]:
    """The arguments an older version left on a queue that a policy carries now."""
    return {k: v for k, v in existing.items() if k in POLICY_CARRIED_ARGUMENTS}


@dataclass(frozen=True)
class PolicySpec:
    """A RabbitMQ policy, as the management API's PUT /api/policies/<vhost>/<name> takes it."""

    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = POLICY_PRIORITY
    apply_to: str = "queues"

    def body(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "definition": self.definition,
            "priority": self.priority,
            "apply-to": self.apply_to,
        }


def _exactly(names: Iterable[str]) -> str:
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def policy_specs(delivery_limit: int, dead_letter_max_length: int) -> list[PolicySpec]:
    """What an operator may tune, as policies matching exactly our queues' names."""
    return [
        PolicySpec(
            "albums.work-queues",
            _exactly(q.name for q in WORK_QUEUES),
            {"delivery-limit": delivery_limit},
        ),
        PolicySpec(
            "albums.dead-letters",
            _exactly(dead_letter_queue_name(q) for q in WORK_QUEUES),
            {"max-length": dead_letter_max_length},
        ),
    ]


_TIER = re.compile(r"^(?P<queue>.+)\.retry\.(?P<delay>[0-9]+)s$")


def stale_retry_queues(existing: Iterable[str], retry_delays: Iterable[int]) -> list[str]:
    """Tiers on the broker that RETRY_DELAYS no longer names: what they hold still returns to its
    work queue after their TTL; once empty they can go (`topology prune`)."""
    wanted = {retry_queue_name(q, d) for q in WORK_QUEUES for d in retry_tiers(retry_delays)}
    ours = {q.name for q in WORK_QUEUES}
    return sorted(
        name
        for name in existing
        if (m := _TIER.match(name)) and m["queue"] in ours and name not in wanted
    )


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


def queue_specs(retry_delays: Iterable[int]) -> list[QueueSpec]:
    """Every queue with its arguments and its one binding."""
    specs: list[QueueSpec] = []
    for queue in WORK_QUEUES:
        specs.append(
            QueueSpec(queue.name, work_queue_arguments(), WORK_EXCHANGE, queue.routing_key)
        )
        for delay in retry_tiers(retry_delays):
            name = retry_queue_name(queue, delay)
            specs.append(QueueSpec(name, retry_queue_arguments(queue, delay), RETRY_EXCHANGE, name))
        specs.append(
            QueueSpec(
                dead_letter_queue_name(queue),
                dead_letter_queue_arguments(),
                DEAD_EXCHANGE,
                queue.routing_key,
            )
        )
    return specs


EXCHANGES = (WORK_EXCHANGE, RETRY_EXCHANGE, DEAD_EXCHANGE)


def declare(channel: Declarer, retry_delays: Iterable[int]) -> None:
    """Declare the whole topology on a vhost that holds none or this one (tests, the bench);
    the services declare through `shared.broker.declarer`, which also takes in the queues of
    older versions."""
    for exchange in EXCHANGES:
        channel.exchange_declare(exchange=exchange, exchange_type="direct", durable=True)
    for spec in queue_specs(retry_delays):
        channel.queue_declare(queue=spec.name, durable=True, arguments=spec.arguments)
        channel.queue_bind(queue=spec.name, exchange=spec.exchange, routing_key=spec.routing_key)
