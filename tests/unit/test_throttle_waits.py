"""Throttling waits (issue 10, item 5): every named wait honoured in full and not much longer,
without spending attempts; a throttle without a hint backs off and gives up after a bound.

The message's journey is simulated hop by hop through `shared.policies.fate.decide` on a fake clock:
each retry copy's tier is the time it spends in the broker before it comes back.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.contracts import dead_letters, outcomes, topology
from shared.contracts.messages import ImageUploadRequested, encode
from shared.contracts.outgoing import Outgoing
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, Route, decide
from shared.policies.retry_policy import RetryPolicy

QUEUE = topology.IMAGE_UPLOADS
TIERS = (5, 30, 120, 600, 3600)
BODY = encode(ImageUploadRequested(album_id="a", image_id=1, key="k"))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Handler:
    """Raises each outcome in turn (the last one for ever), recording when it ran."""

    def __init__(self, clock: Clock, *raises: BaseException | None) -> None:
        self.clock = clock
        self.raises = list(raises)
        self.ran_at: list[float] = []

    def __call__(self, message: ImageUploadRequested, attempt: int) -> None:
        self.ran_at.append(self.clock())
        outcome = self.raises.pop(0) if len(self.raises) > 1 else self.raises[0]
        if outcome is not None:
            raise outcome


def tier_of(message: Outgoing) -> int:
    return int(message.routing_key.rsplit(".", 1)[1].rstrip("s"))


def journey(
    handler: Handler, clock: Clock, give_up_s: float = 4 * 3600, max_hops: int = 500, seed: int = 1
) -> tuple[Fate, float]:
    """Deliver until the message is acked or dead; returns the last fate and the time spent."""
    route: Route[ImageUploadRequested] = Route(
        QUEUE,
        ImageUploadRequested,
        handler,
        RetryPolicy(TIERS, max_attempts=3, throttle_give_up_s=give_up_s),
    )
    start = clock.now
    headers: dict[str, Any] = {}
    rng = random.Random(seed)
    for _ in range(max_hops):
        fate = decide(route, Delivery(BODY, headers), clock=clock, rng=rng)
        if fate.kind not in ("retry", "early"):
            return fate, clock.now - start
        (copy,) = fate.outgoing
        assert tier_of(copy) in topology.retry_tiers(TIERS)
        clock.now += tier_of(copy)
        headers = dict(copy.headers)
    raise AssertionError("the message never settled")


@pytest.mark.parametrize("asked_s", [60, 90 * 60, 7, 45, 200, 3 * 3600])
def test_a_named_wait_is_honoured_in_full_and_ends_within_a_quarter_more(asked_s: int) -> None:
    clock = Clock()
    handler = Handler(clock, outcomes.Throttled("slow down", wait_s=asked_s, code=80001), None)
    fate, _ = journey(handler, clock)
    assert fate.kind == "ack"
    first, second = handler.ran_at  # the handler never ran early, between the hops
    waited = second - first
    assert asked_s <= waited <= max(1.25 * asked_s, asked_s + min(TIERS)), waited


def test_ninety_minutes_regain_time_is_waited_in_full_without_spending_attempts() -> None:
    clock = Clock()
    handler = Handler(clock, outcomes.Throttled("regain in 90 min", wait_s=5400, code=80001), None)
    route: Route[ImageUploadRequested] = Route(
        QUEUE, ImageUploadRequested, handler, RetryPolicy(TIERS, max_attempts=3)
    )
    fate = decide(route, Delivery(BODY, {retry_policy.ATTEMPT_HEADER: 3}), clock=clock)
    (copy,) = fate.outgoing
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 3
    assert float(copy.headers[retry_policy.NOT_BEFORE_HEADER]) == pytest.approx(clock.now + 5400)


def test_a_copy_that_arrives_early_goes_back_without_running_the_handler() -> None:
    clock = Clock()
    handler = Handler(clock, None)
    route: Route[ImageUploadRequested] = Route(
        QUEUE, ImageUploadRequested, handler, RetryPolicy(TIERS, max_attempts=3)
    )
    headers = {retry_policy.NOT_BEFORE_HEADER: clock.now + 100, retry_policy.ATTEMPT_HEADER: 2}
    fate = decide(route, Delivery(BODY, headers), clock=clock)
    assert fate.kind == "early" and handler.ran_at == []
    (copy,) = fate.outgoing
    assert tier_of(copy) <= 125 and copy.headers[retry_policy.ATTEMPT_HEADER] == 2


def test_a_throttle_without_a_hint_backs_off_then_gives_up_with_a_clear_reason() -> None:
    clock = Clock()
    handler = Handler(
        clock, outcomes.Throttled("Facebook is throttling this page (code 32)", code=32)
    )
    fate, spent = journey(handler, clock, give_up_s=4 * 3600)
    assert fate.kind == "dead"
    (letter,) = fate.outgoing
    reason = letter.headers[dead_letters.REASON_HEADER]
    assert "kept throttling" in reason and "4 h" in reason
    assert 4 * 3600 <= spent <= 1.25 * 4 * 3600
    gaps = [b - a for a, b in zip(handler.ran_at, handler.ran_at[1:], strict=False)]
    assert gaps[0] < 60  # the first retries come soon ...
    assert max(gaps) > 600  # ... and the waits grow: not every few seconds for ever
    assert len(handler.ran_at) < 30


def test_hintless_backoff_is_jittered() -> None:
    waits = set()
    for seed in range(5):
        clock = Clock()
        handler = Handler(clock, outcomes.Throttled("x", code=4), None, None, None)
        handler.raises = [outcomes.Throttled("x", code=4)] * 4 + [None]
        journey(handler, clock, seed=seed)
        waits.add(
            tuple(round(b - a) for a, b in zip(handler.ran_at, handler.ran_at[1:], strict=False))
        )
    assert len(waits) > 1


def test_a_transient_failure_after_a_throttle_drops_its_not_before() -> None:
    clock = Clock()
    handler = Handler(clock, outcomes.Transient("boom"))
    route: Route[ImageUploadRequested] = Route(
        QUEUE, ImageUploadRequested, handler, RetryPolicy(TIERS, max_attempts=3)
    )
    headers = {retry_policy.NOT_BEFORE_HEADER: clock.now - 1}
    (copy,) = decide(route, Delivery(BODY, headers), clock=clock).outgoing
    assert retry_policy.NOT_BEFORE_HEADER not in copy.headers


@pytest.mark.parametrize("asked_s", [60, 5400])
def test_next_step_holds_a_named_wait_in_full(asked_s: int) -> None:
    step = retry_policy.next_step(
        retry_policy.Failure(retry_policy.FailureKind.THROTTLED, "x", 80001, wait_s=asked_s),
        1,
        TIERS,
        3,
    )
    assert isinstance(step, retry_policy.RetryLater)
    hold = getattr(step, "hold_s", None)  # how long the message waits, over one or more tiers
    assert hold is not None and asked_s <= hold <= 1.25 * asked_s, (step.delay_s, hold)
    assert step.delay_s <= 1.25 * asked_s
