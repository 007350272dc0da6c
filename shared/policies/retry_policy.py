"""Where retries are decided: plain functions from a failure and an attempt count to a step.

- transient failures wait in the next delay tier, until the attempt budget is spent;
- throttling waits at least as long as the third party asks and at most a quarter longer
  (`THROTTLE_SLACK`), without spending the budget: a wait longer than a tier, or between two
  tiers, is held over several hops, the copy carrying the time it may run again
  (`album-not-before`), and the runtime sends a copy that comes back early on to the next hop;
- a throttle without a hint backs off exponentially with jitter over the tiers, and gives up
  with a clear reason once it has lasted `throttle_give_up_s`
  (docs/facebook-throttling.md);
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

from shared.contracts import topology
from shared.contracts.dead_letters import own_headers
from shared.contracts.outgoing import Outgoing

ATTEMPT_HEADER = "album-attempt"
#: How many outages in a row the message met (absent: none); only the wait grows with it.
OUTAGE_HEADER = "album-outage"
#: The least wait before the n-th outage in a row is tried again; the last is the cap.
OUTAGE_WAITS_S = (1, 2, 4, 8, 16, 30)
#: Epoch seconds before which the handler must not run the message (a throttle's wait).
NOT_BEFORE_HEADER = "album-not-before"
#: Epoch seconds by which the wait should have ended (not_before + the slack).
NOT_AFTER_HEADER = "album-not-after"
#: Throttles without a hint in a row, and since when (epoch seconds).
THROTTLES_HEADER = "album-throttles"
THROTTLED_SINCE_HEADER = "album-throttled-since"
THROTTLE_HEADERS = (NOT_BEFORE_HEADER, NOT_AFTER_HEADER, THROTTLES_HEADER, THROTTLED_SINCE_HEADER)
#: A named wait may end this much later than asked (0.25: within 1.25x).
THROTTLE_SLACK = 0.25
#: How long a throttle without a hint may last before the message is given up on.
DEFAULT_THROTTLE_GIVE_UP_S = 4 * 3600.0


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
    #: The request may have been sent and may still take effect (a read timeout, a reset
    #: after sending, a 5xx): the next attempt must wait until it no longer can.
    in_doubt: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's retry settings: its delay tiers and how many attempts a message gets."""

    delays: tuple[int, ...]
    max_attempts: int
    #: Give up on a throttle without a hint after it lasted this long (None: never).
    throttle_give_up_s: float | None = DEFAULT_THROTTLE_GIVE_UP_S


@dataclass(frozen=True)
class RetryLater:
    delay_s: int
    #: The attempt number the retried message carries.
    next_attempt: int
    #: A throttle's whole wait, held over one or more hops (`delay_s` is the first).
    hold_s: float | None = None
    #: A throttle without a hint: the message counts one more in a row.
    hintless: bool = False


@dataclass(frozen=True)
class ThrottleHistory:
    """Throttles without a hint the message met in a row, and for how long."""

    count: int = 0
    lasted_s: float = 0.0


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


def next_step(
    failure: Failure,
    attempt: int,
    delays: Sequence[int],
    max_attempts: int,
    rng: random.Random | None = None,
    history: ThrottleHistory | None = None,
    give_up_s: float | None = None,
) -> RetryLater | GiveUp:
    """What to do after `failure` on attempt number `attempt` (1 for the first try)."""
    if failure.kind in (FailureKind.PERMANENT, FailureKind.AUTH):
        return GiveUp(failure.reason)
    if failure.kind is FailureKind.THROTTLED:
        return after_throttle(
            failure, attempt, delays, history or ThrottleHistory(), give_up_s, rng
        )
    if attempt >= max_attempts:
        return GiveUp(f"gave up after {attempt} attempts: {failure.reason}")
    tier = _tier_for_attempt(delays, attempt, rng)
    if failure.wait_s is not None:  # a transient failure that said how long it lasts
        tier = max(tier, _tier_at_least(delays, failure.wait_s, attempt, rng))
    return RetryLater(tier, attempt + 1)


def after_throttle(
    failure: Failure,
    attempt: int,
    delays: Sequence[int],
    history: ThrottleHistory,
    give_up_s: float | None,
    rng: random.Random | None = None,
) -> RetryLater | GiveUp:
    """A named wait is held in full; without one, back off exponentially with jitter from the
    shortest tier up to the longest, until the throttling has lasted `give_up_s`."""
    if failure.wait_s is not None:
        hold = max(float(failure.wait_s), 0.0)
        return RetryLater(hop(delays, hold, THROTTLE_SLACK * hold), attempt, hold_s=hold)
    if give_up_s is not None and history.lasted_s >= give_up_s:
        return GiveUp(
            f"Facebook kept throttling for {give_up_s / 3600:g} h without saying "
            f"for how long: {failure.reason}"
        )
    wait = backoff_s(delays, history.count, rng)
    if give_up_s is not None:  # the last wait ends when the bound does
        wait = max(min(delays), min(wait, give_up_s - history.lasted_s))
    return RetryLater(hop(delays, wait, THROTTLE_SLACK * wait), attempt, hold_s=wait, hintless=True)


def backoff_s(delays: Sequence[int], throttles: int, rng: random.Random | None = None) -> float:
    """The wait after `throttles` hintless throttles in a row: doubling from the shortest tier
    up to the longest, each drawn between half and all of it (jitter spreads the retries of
    many images throttled at once)."""
    ceiling = min(float(max(delays)), min(delays) * 2.0 ** min(throttles, 40))
    return (rng or random).uniform(ceiling / 2, ceiling)


def hop(delays: Sequence[int], remaining_s: float, slack_s: float) -> int:
    """The tier for the next hop of a wait with `remaining_s` left, ending at most `slack_s`
    after it: the shortest tier that covers it if it ends in time, else the longest tier that
    does not pass it (the copy comes back early and takes another hop)."""
    tiers = topology.retry_tiers(delays)
    if remaining_s <= tiers[0]:
        return tiers[0]
    index = bisect.bisect_left(tiers, remaining_s)
    if index < len(tiers) and tiers[index] <= remaining_s + slack_s:
        return tiers[index]
    return tiers[bisect.bisect_right(tiers, remaining_s) - 1]


def throttle_history(headers: Mapping[str, Any], now: float) -> ThrottleHistory:
    """Hintless throttles in a row a delivery met, and how long since the first."""
    try:
        count = max(0, int(headers.get(THROTTLES_HEADER, 0)))
        since = float(headers.get(THROTTLED_SINCE_HEADER, now))
    except (TypeError, ValueError):
        return ThrottleHistory()
    return ThrottleHistory(count, max(0.0, now - since)) if count else ThrottleHistory()


def not_before(headers: Mapping[str, Any]) -> tuple[float, float] | None:
    """When a held copy may run again and by when its wait should end (None: not held)."""
    try:
        start = float(headers[NOT_BEFORE_HEADER])
        return start, float(headers.get(NOT_AFTER_HEADER, start))
    except (KeyError, TypeError, ValueError):
        return None


def throttle_marks(step: RetryLater, headers: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The headers a throttled copy carries: its not-before/not-after, and for a hintless
    throttle the count in a row and since when."""
    if step.hold_s is None:
        return {}
    marks: dict[str, Any] = {
        NOT_BEFORE_HEADER: _epoch(now + step.hold_s),
        NOT_AFTER_HEADER: _epoch(now + step.hold_s * (1 + THROTTLE_SLACK)),
    }
    if step.hintless:
        history = throttle_history(headers, now)
        marks[THROTTLES_HEADER] = history.count + 1
        marks[THROTTLED_SINCE_HEADER] = _epoch(now - history.lasted_s)
    return marks


def _epoch(seconds: float) -> str:
    """An epoch time for a header. AMQP field tables have no float type that pika writes (it
    refuses the publish), so the time travels as text, read back with float()."""
    return f"{seconds:.3f}"


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


def _tier_at_least(
    delays: Sequence[int], wait_s: float | None, attempt: int, rng: random.Random | None
) -> int:
    """The shortest tier that waits at least `wait_s` (the longest if none does)."""
    if wait_s is None:
        return _tier_for_attempt(delays, attempt, rng)
    tiers = topology.retry_tiers(delays)
    index = bisect.bisect_left(tiers, wait_s)
    return tiers[min(index, len(tiers) - 1)]


def retry_message(
    queue: topology.WorkQueue,
    body: bytes,
    headers: Mapping[str, Any],
    step: RetryLater,
    outages: int = 0,
    throttle: Mapping[str, Any] | None = None,
) -> Outgoing:
    """The copy that waits in the step's delay tier, then returns to the work queue; it
    carries the outages in a row it met (none once it was handled without one) and the
    throttle marks given (`throttle_marks`; none once it was handled without a throttle)."""
    name = topology.retry_queue_name(queue, step.delay_s)
    dropped = (OUTAGE_HEADER, *THROTTLE_HEADERS)
    kept = {k: v for k, v in own_headers(headers).items() if k not in dropped}
    marks = {
        ATTEMPT_HEADER: step.next_attempt,
        **({OUTAGE_HEADER: outages} if outages else {}),
        **(throttle or {}),
    }
    return Outgoing(topology.RETRY_EXCHANGE, name, body, headers={**kept, **marks})
