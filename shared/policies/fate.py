"""A message's fate, decided in one place for every queue: ack, a retry copy, or a dead letter.

The consumer runtime (`shared.broker.consumer`) calls `decide` on a worker thread for each
delivery, publishes what it returns with confirms, then acks. No pika here, so the whole
decision is unit-tested without a broker (`tests/unit/test_fate.py`).

- A body that does not decode into the route's message type is poison: one dead letter, with
  its reason, on its first delivery. A handler that finds the message can never be processed
  (it names an image the store does not know) raises `PoisonMessage` to the same effect.
- The handler returns: ack. It raises a typed outcome (`shared.contracts.outcomes`): the retry
  policy turns it into a retry copy in a delay tier or, once given up, a dead letter.
- It raises an outage (`shared.policies.outages`: the store or the broker is away): not the
  message's fault, so the message waits in a delay tier without spending its attempt budget, longer
  with each outage in a row. Nack-requeueing it instead would spend the work queue's delivery limit,
  and the broker would dead-letter it once a long outage had used it up.
- A copy held for a throttle (`album-not-before`) that arrives before its time goes on to its
  next hop without running the handler: a wait longer than the longest tier, or between two
  tiers, is honoured in full (`shared.policies.retry_policy.hop`).
- It raises anything else (a bug): a transient failure that spends an attempt, so a message
  that always trips the bug ends as a dead letter with its reason, not circling for ever.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from shared.contracts import messages, topology
from shared.contracts.dead_letters import dead_letter
from shared.contracts.outcomes import Busy, Outcome, Transient
from shared.contracts.outgoing import Outgoing
from shared.observability import error_ids
from shared.policies import retry_policy
from shared.policies.outages import is_outage
from shared.policies.retry_policy import Failure, GiveUp, RetryLater, RetryPolicy

log = logging.getLogger(__name__)

M = TypeVar("M", messages.ImageUploadRequested, messages.AlbumSettled, messages.FeedPostRequested)


@dataclass(frozen=True)
class Delivery:
    """A message as the broker delivered it."""

    body: bytes
    headers: Mapping[str, Any]
    redelivered: bool = False
    message_id: str | None = None
    routing_key: str = ""


@dataclass(frozen=True)
class Route(Generic[M]):
    """What a work queue's messages are and who handles them.

    `handler(message, attempt)` returns to have the message acked, or raises an outcome.
    `on_retry(message, failure, step)` records a retry before its copy is sent (not for
    `Busy`, which changes nothing). `on_give_up(message, failure, letter)`, when given, owns
    the final failure and its dead letter: it records both in one transaction (the letter
    goes out through the outbox), so the runtime does not publish the letter itself.
    """

    queue: topology.WorkQueue
    message_type: type[M]
    handler: Callable[[M, int], None]
    policy: RetryPolicy
    on_retry: Callable[[M, Failure, RetryLater], None] | None = None
    on_give_up: Callable[[M, Failure, Outgoing], None] | None = None


@dataclass(frozen=True)
class Fate:
    """Publish `outgoing` with confirms, then ack; `kind` says why (for logs, tests and the
    metrics), `code` the third party's error code that decided it, if any."""

    kind: str = "ack"
    outgoing: tuple[Outgoing, ...] = ()
    code: int | None = None
    #: A retry because Facebook throttled (counted apart from other retries).
    throttled: bool = False

    @property
    def outcome(self) -> str:
        """The `outcome` label of `albums_jobs_total` (README: Metrics and alerts)."""
        return "throttled" if self.throttled else _OUTCOMES.get(self.kind, self.kind)


#: Fate kinds as the metrics name them: a poison message is a dead letter too.
_OUTCOMES = {
    "ack": "done",
    "retry": "retried",
    "dead": "dead_lettered",
    "poison": "dead_lettered",
    "early": "held",
}


ACK = Fate()


def decide(
    route: Route[M],
    delivery: Delivery,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> Fate:
    """Run the route's handler on the delivery and say what becomes of the message.
    `clock` gives epoch seconds (throttle waits are held across processes by the header)."""
    attempt = retry_policy.attempt_of(delivery.headers)
    try:
        message = decode(route, delivery.body)
    except messages.PoisonMessage as exc:
        return _poison(route, delivery, str(exc), attempt)
    now = clock()
    if (held := retry_policy.not_before(delivery.headers)) is not None and now < held[0]:
        return _early(route, delivery, attempt, now, held)
    try:
        return _handle(route, delivery, message, attempt, now, rng)
    except messages.PoisonMessage as exc:
        return _poison(route, delivery, str(exc), attempt)
    except Exception as exc:  # noqa: BLE001 - every exception gets a fate, none escapes
        if is_outage(exc):
            return _outage(route, delivery, attempt, exc)
        return _bug(route, delivery, message, attempt, exc)


def decode(route: Route[M], body: bytes) -> M:
    """The body as the route's message type, or PoisonMessage saying why not."""
    message = messages.decode(body)
    if not isinstance(message, route.message_type):
        raise messages.PoisonMessage(f"{message.type} does not belong on {route.queue.name}")
    return message


def _early(
    route: Route[M], delivery: Delivery, attempt: int, now: float, held: tuple[float, float]
) -> Fate:
    start, end = held
    step = RetryLater(
        retry_policy.hop(route.policy.delays, start - now, max(0.0, end - start)), attempt
    )
    kept = {k: v for k, v in delivery.headers.items() if k in retry_policy.THROTTLE_HEADERS}
    log.debug(
        "%s: a held message came back %.0f s early; next hop %s s",
        route.queue.name,
        start - now,
        step.delay_s,
    )
    return Fate(
        "early",
        (
            retry_policy.retry_message(
                route.queue,
                delivery.body,
                delivery.headers,
                step,
                retry_policy.outages_of(delivery.headers),
                kept,
            ),
        ),
    )


#: The delivery a handler runs for (its headers: the uploader's fencing number).
_delivery: ContextVar[Delivery | None] = ContextVar("delivery", default=None)


def current_delivery() -> Delivery | None:
    """The delivery the calling handler was given, or None outside a handler."""
    return _delivery.get()


def _handle(
    route: Route[M],
    delivery: Delivery,
    message: M,
    attempt: int,
    now: float,
    rng: random.Random | None,
) -> Fate:
    token = _delivery.set(delivery)
    try:
        route.handler(message, attempt)
    except Outcome as outcome:
        return _after_failure(route, delivery, message, attempt, outcome, now, rng)
    finally:
        _delivery.reset(token)
    return ACK


def _after_failure(
    route: Route[M],
    delivery: Delivery,
    message: M,
    attempt: int,
    outcome: Outcome,
    now: float | None = None,
    rng: random.Random | None = None,
) -> Fate:
    failure = outcome.failure
    policy = route.policy
    now = time.time() if now is None else now
    # Busy is another attempt holding the work, not Facebook: it never gives up.
    busy = isinstance(outcome, Busy)
    history = (
        retry_policy.ThrottleHistory()
        if busy
        else retry_policy.throttle_history(delivery.headers, now)
    )
    step = retry_policy.next_step(
        failure,
        attempt,
        policy.delays,
        policy.max_attempts,
        rng,
        history,
        None if busy else policy.throttle_give_up_s,
    )
    if isinstance(step, GiveUp):
        log.warning("%s: giving up on a message: %s", route.queue.name, step.reason)
        letter = dead_letter(
            route.queue, delivery.body, delivery.headers, step.reason, failure.code, attempt
        )
        if route.on_give_up is None:
            return Fate("dead", (letter,), failure.code)
        route.on_give_up(message, replace(failure, reason=step.reason), letter)
        return Fate("dead", code=failure.code)
    log.info(
        "%s: a message retries in %.0f s (first hop %s s): %s",
        route.queue.name,
        step.hold_s if step.hold_s is not None else step.delay_s,
        step.delay_s,
        failure.reason,
    )
    if route.on_retry is not None and not isinstance(outcome, Busy):
        route.on_retry(message, failure, step)
    marks = retry_policy.throttle_marks(step, delivery.headers, now)
    if busy:
        marks.pop(retry_policy.THROTTLES_HEADER, None)
        marks.pop(retry_policy.THROTTLED_SINCE_HEADER, None)
    copy = retry_policy.retry_message(
        route.queue, delivery.body, delivery.headers, step, throttle=marks
    )
    if outcome.copy_headers:  # e.g. the uploader's fencing number (shared/contracts/fencing.py)
        copy = replace(copy, headers={**copy.headers, **outcome.copy_headers})
    # Busy is carried as a throttle (no budget spent) but is not Facebook's: counted as a retry.
    throttled = failure.kind == retry_policy.FailureKind.THROTTLED and not busy
    return Fate("retry", (copy,), failure.code, throttled=throttled)


def _poison(route: Route[M], delivery: Delivery, reason: str, attempt: int) -> Fate:
    log.warning("%s: dead-lettering a poison message: %s", route.queue.name, reason)
    return Fate(
        "poison",
        (dead_letter(route.queue, delivery.body, delivery.headers, reason, None, attempt),),
    )


def _bug(route: Route[M], delivery: Delivery, message: M, attempt: int, exc: Exception) -> Fate:
    error_id = error_ids.logged(
        log,
        f"{route.queue.name}: the handler failed unexpectedly; the attempt counts",
        exc,
        logging.ERROR,
    )
    failure = Transient(f"{error_ids.INTERNAL} (error id {error_id})")
    try:
        return _after_failure(route, delivery, message, attempt, failure)
    except Exception as hook_exc:  # noqa: BLE001 - a hook failed too
        if is_outage(hook_exc):  # it met the store away: wait it out
            return _outage(route, delivery, attempt, hook_exc)
        # A hook that fails on its own would circle the tiers for ever: dead-letter the
        # message here, with both reasons, for an operator to replay once it is fixed.
        hook_id = error_ids.logged(
            log,
            f"{route.queue.name}: the service's hook failed too; dead-lettering the message",
            hook_exc,
            logging.ERROR,
        )
        reason = (
            f"{error_ids.INTERNAL} (error id {error_id}), and recording it failed "
            f"(error id {hook_id})"
        )
        return Fate(
            "dead",
            (dead_letter(route.queue, delivery.body, delivery.headers, reason, None, attempt),),
        )


def _outage(route: Route[M], delivery: Delivery, attempt: int, exc: Exception) -> Fate:
    outages = retry_policy.outages_of(delivery.headers) + 1
    step = retry_policy.after_outage(outages, attempt, route.policy.delays)
    log.error(
        "%s: the handler failed (%s outage in a row); the message waits %s s, its attempts unspent",
        route.queue.name,
        outages,
        step.delay_s,
        exc_info=exc,
    )
    return Fate(
        "outage",
        (retry_policy.retry_message(route.queue, delivery.body, delivery.headers, step, outages),),
    )
