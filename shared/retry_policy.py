"""Where retries are decided: plain functions from a failure and an attempt count to a step.

- transient failures wait in the next delay tier, until the attempt budget is spent;
- throttling waits at least as long as the third party asks, without spending the budget;
- permanent and authorisation failures give up at once;
- an outage (the handler failed, not the message: the store is down) waits in a tier that grows
  with each outage in a row, up to a cap, without spending the budget: a nack-requeue would
  count toward the work queue's delivery limit and let the broker dead-letter the message.

Attempts travel in our own `album-attempt` header: RabbitMQ 4 no longer updates `x-death` on
republished messages (and 3.13+ drops `x-` headers that clients set).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared import topology
from shared.dead_letters import own_headers
from shared.outgoing import Outgoing

ATTEMPT_HEADER = "album-attempt"
#: How many outages in a row the message met (absent: none); only the wait grows with it.
OUTAGE_HEADER = "album-outage"
#: The least wait before the n-th outage in a row is tried again; the last is the cap.
OUTAGE_WAITS_S = (1, 2, 4, 8, 16, 30)


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    AUTH = "auth"


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str
    code: int | None = None
    #: Seconds the third party asked us to wait, if it said.
    wait_s: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's retry settings: its delay tiers and how many attempts a message gets."""

    delays: tuple[int, ...]
    max_attempts: int


@dataclass(frozen=True)
class RetryLater:
    delay_s: int
    #: The attempt number the retried message carries.
    next_attempt: int


@dataclass(frozen=True)
class GiveUp:
    reason: str


def attempt_of(headers: Mapping[str, Any]) -> int:
    """The attempt number a delivery carries (1 for the first try; junk counts as 1)."""
    value = headers.get(ATTEMPT_HEADER, 1)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def next_step(failure: Failure, attempt: int, delays: Sequence[int], max_attempts: int,
              rng: random.Random | None = None) -> RetryLater | GiveUp:
    """What to do after `failure` on attempt number `attempt` (1 for the first try)."""
    if failure.kind in (FailureKind.PERMANENT, FailureKind.AUTH):
        return GiveUp(failure.reason)
    if failure.kind is FailureKind.THROTTLED:
        return RetryLater(_tier_at_least(delays, failure.wait_s, attempt, rng), attempt)
    if attempt >= max_attempts:
        return GiveUp(f"gave up after {attempt} attempts: {failure.reason}")
    tier = _tier_for_attempt(delays, attempt, rng)
    if failure.wait_s is not None:  # a transient failure that said how long it lasts
        tier = max(tier, _tier_at_least(delays, failure.wait_s, attempt, rng))
    return RetryLater(tier, attempt + 1)


def outages_of(headers: Mapping[str, Any]) -> int:
    """How many outages in a row a delivery already met (junk counts as none)."""
    try:
        return max(0, int(headers.get(OUTAGE_HEADER, 0)))
    except (TypeError, ValueError):
        return 0


def after_outage(outages: int, attempt: int, delays: Sequence[int]) -> RetryLater:
    """The wait after the `outages`-th outage in a row: longer each time, up to the cap, and
    the attempt number unchanged."""
    wait = OUTAGE_WAITS_S[min(max(outages, 1), len(OUTAGE_WAITS_S)) - 1]
    return RetryLater(_tier_at_least(delays, wait, attempt, None), attempt)


def _tier_for_attempt(delays: Sequence[int], attempt: int, rng: random.Random | None) -> int:
    base = sorted(set(delays))
    choices = topology.jittered(base[min(attempt - 1, len(base) - 1)])
    return (rng or random).choice(choices)


def _tier_at_least(delays: Sequence[int], wait_s: float | None, attempt: int,
                   rng: random.Random | None) -> int:
    """The shortest tier that waits at least `wait_s` (the longest if none does)."""
    if wait_s is None:
        return _tier_for_attempt(delays, attempt, rng)
    tiers = topology.retry_tiers(delays)
    index = bisect.bisect_left(tiers, wait_s)
    return tiers[min(index, len(tiers) - 1)]


def retry_message(queue: topology.WorkQueue, body: bytes, headers: Mapping[str, Any],
                  step: RetryLater, outages: int = 0) -> Outgoing:
    """The copy that waits in the step's delay tier, then returns to the work queue; it
    carries the outages in a row it met (none once it was handled without one)."""
    name = topology.retry_queue_name(queue, step.delay_s)
    kept = {k: v for k, v in own_headers(headers).items() if k != OUTAGE_HEADER}
    marks = {ATTEMPT_HEADER: step.next_attempt, **({OUTAGE_HEADER: outages} if outages else {})}
    return Outgoing(topology.RETRY_EXCHANGE, name, body, headers={**kept, **marks})
