import random
from typing import Any

import pytest

from shared.contracts import topology
from shared.policies.retry_policy import (
    ATTEMPT_HEADER,
    Failure,
    FailureKind,
    GiveUp,
    RetryLater,
    attempt_of,
    next_step,
    retry_message,
)

DELAYS = (5, 30, 120)


def transient(reason: str = "Facebook answered 503") -> Failure:
    return Failure(FailureKind.TRANSIENT, reason)


def later(step: RetryLater | GiveUp) -> RetryLater:
    assert isinstance(step, RetryLater), step
    return step


def test_transient_failures_climb_the_tiers() -> None:
    steps = [
        later(next_step(transient(), attempt, DELAYS, 10, random.Random(1)))
        for attempt in (1, 2, 3, 4)
    ]
    assert [s.next_attempt for s in steps] == [2, 3, 4, 5]
    bases = (5, 30, 120, 120)
    assert all(s.delay_s in topology.jittered(d) for s, d in zip(steps, bases, strict=True))


def test_a_burst_of_failures_spreads_over_both_twin_tiers() -> None:
    rng = random.Random(3)
    delays = {later(next_step(transient(), 1, DELAYS, 10, rng)).delay_s for _ in range(50)}
    assert delays == {5, 7}


def test_transient_failures_give_up_when_the_budget_is_spent() -> None:
    step = next_step(transient(), 4, DELAYS, 4)
    assert isinstance(step, GiveUp)
    assert "after 4 attempts" in step.reason and "503" in step.reason


@pytest.mark.parametrize("kind", [FailureKind.PERMANENT, FailureKind.AUTH])
def test_permanent_and_auth_failures_give_up_at_once(kind: FailureKind) -> None:
    assert next_step(Failure(kind, "refused"), 1, DELAYS, 10) == GiveUp("refused")


def test_throttling_waits_as_long_as_asked_without_spending_the_budget() -> None:
    # 60 s between the tiers 38 and 120: the first hop is 38 s, the whole wait is held.
    step = next_step(Failure(FailureKind.THROTTLED, "slow down", 613, wait_s=60), 3, DELAYS, 3)
    assert step == RetryLater(38, 3, hold_s=60)


def test_throttling_longer_than_every_tier_hops_through_the_longest_and_holds_it_all() -> None:
    step = next_step(Failure(FailureKind.THROTTLED, "x", 4, wait_s=10_000), 1, DELAYS, 3)
    assert step == RetryLater(150, 1, hold_s=10_000)


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        ({}, 1),
        ({ATTEMPT_HEADER: 3}, 3),
        ({ATTEMPT_HEADER: "junk"}, 1),
        ({ATTEMPT_HEADER: -4}, 1),
    ],
)
def test_the_attempt_comes_from_our_own_header(headers: dict[str, Any], attempt: int) -> None:
    assert attempt_of(headers) == attempt


def test_a_retry_copy_goes_to_its_tier_with_the_next_attempt() -> None:
    message = retry_message(topology.IMAGE_UPLOADS, b"{}", {"other": "kept"}, RetryLater(30, 2))
    assert message.exchange == topology.RETRY_EXCHANGE
    assert message.routing_key == "uploader.image-uploads.retry.00030s"
    assert message.headers == {"other": "kept", ATTEMPT_HEADER: 2}


def test_copies_drop_the_brokers_x_headers_which_hold_timestamps() -> None:
    import datetime

    from shared.contracts.dead_letters import dead_letter

    headers = {"x-death": [{"time": datetime.datetime(2026, 1, 1), "count": 1}], "mine": 1}
    retry = retry_message(topology.IMAGE_UPLOADS, b"{}", headers, RetryLater(5, 2))
    dead = dead_letter(topology.IMAGE_UPLOADS, b"{}", headers, "why", None, 2)
    assert "x-death" not in retry.headers and retry.headers["mine"] == 1
    assert "x-death" not in dead.headers and dead.headers["mine"] == 1
