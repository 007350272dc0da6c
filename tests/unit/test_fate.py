"""The consumer runtime's decision for each delivery (shared.policies.fate): no broker, no store."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from shared.broker.errors import BrokerError
from shared.broker.fake_publisher import FakePublisher
from shared.contracts import dead_letters, outcomes, topology
from shared.contracts.messages import AlbumSettled, ImageUploadRequested, PoisonMessage, encode
from shared.contracts.outgoing import Outgoing
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, Route, decide
from shared.policies.retry_policy import Failure, RetryLater, RetryPolicy

QUEUE = topology.IMAGE_UPLOADS
DELAYS = (5, 30, 120)
BODY = encode(ImageUploadRequested(album_id="a", image_id=1, key="k"))


class Recorder:
    """A handler that raises what it is told to, and the route's hooks, recording calls."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises
        self.calls: list[tuple[int, int]] = []
        self.retries: list[tuple[Failure, RetryLater]] = []
        self.given_up: list[tuple[Failure, Outgoing]] = []

    def __call__(self, message: ImageUploadRequested, attempt: int) -> None:
        self.calls.append((message.image_id, attempt))
        if self.raises is not None:
            raise self.raises

    def route(self, give_up_hook: bool = False) -> Route[ImageUploadRequested]:
        return Route(
            QUEUE,
            ImageUploadRequested,
            self,
            RetryPolicy(DELAYS, max_attempts=3),
            on_retry=lambda m, f, s: self.retries.append((f, s)),
            on_give_up=(lambda m, f, letter: self.given_up.append((f, letter)))
            if give_up_hook
            else None,
        )


def deliver(
    handler: Recorder,
    attempt: int | None = None,
    body: bytes = BODY,
    give_up_hook: bool = False,
    **headers: Any,
) -> Fate:
    if attempt is not None:
        headers[retry_policy.ATTEMPT_HEADER] = attempt
    return decide(handler.route(give_up_hook), Delivery(body, headers))


def tier_of(message: Outgoing) -> int:
    return int(message.routing_key.rsplit(".", 1)[1].rstrip("s"))


def test_a_handler_that_returns_is_acked_with_nothing_to_publish() -> None:
    handler = Recorder()
    assert deliver(handler) == Fate("ack", ())
    assert handler.calls == [(1, 1)]


@pytest.mark.parametrize(
    "body, why",
    [
        (b"{not json", "Invalid JSON"),
        (b'{"type": "image.upload_requested", "version": 9}', "version"),
        (
            encode(AlbumSettled(album_id="a", settle_seq=1, uploaded=[], failed=[])),
            "does not belong on uploader.image-uploads",
        ),
    ],
)
def test_poison_is_dead_lettered_once_by_the_runtime_and_never_handled(
    body: bytes, why: str
) -> None:
    handler = Recorder()
    fate = deliver(handler, body=body, give_up_hook=True)
    (letter,) = fate.outgoing
    assert fate.kind == "poison" and letter.exchange == topology.DEAD_EXCHANGE
    assert why in letter.headers[dead_letters.REASON_HEADER]
    assert letter.body == body
    assert handler.calls == [] and handler.given_up == []


def test_a_handler_that_finds_the_message_can_never_be_processed_makes_it_poison() -> None:
    fate = deliver(Recorder(PoisonMessage("image 1 is not in the store")))
    (letter,) = fate.outgoing
    assert fate.kind == "poison"
    assert letter.headers[dead_letters.REASON_HEADER] == "image 1 is not in the store"


def test_transient_goes_to_the_attempts_tier_and_spends_one_attempt() -> None:
    handler = Recorder(outcomes.Transient("Graph 503", 503))
    fate = deliver(handler, attempt=2)
    (copy,) = fate.outgoing
    assert fate.kind == "retry" and copy.exchange == topology.RETRY_EXCHANGE
    assert tier_of(copy) in topology.jittered(DELAYS[1])
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 3
    ((failure, step),) = handler.retries
    assert failure.code == 503 and step.delay_s == tier_of(copy)


def test_a_transient_failure_that_says_how_long_waits_at_least_that() -> None:
    (copy,) = deliver(Recorder(outcomes.Transient("busy", wait_s=100))).outgoing
    assert tier_of(copy) >= 100


def test_spent_attempts_are_dead_lettered_with_the_reason_by_the_runtime() -> None:
    fate = deliver(Recorder(outcomes.Transient("Graph 503", 503)), attempt=3)
    (letter,) = fate.outgoing
    assert fate.kind == "dead" and letter.exchange == topology.DEAD_EXCHANGE
    assert letter.headers[dead_letters.REASON_HEADER] == "gave up after 3 attempts: Graph 503"
    assert letter.headers[dead_letters.CODE_HEADER] == 503
    assert letter.headers[dead_letters.ATTEMPTS_HEADER] == 3


def test_a_give_up_hook_owns_the_dead_letter_and_the_runtime_publishes_nothing() -> None:
    handler = Recorder(outcomes.Permanent("refused", 324))
    fate = deliver(handler, give_up_hook=True)
    assert fate == Fate("dead", (), 324)  # the code goes on to the metrics
    ((failure, letter),) = handler.given_up
    assert failure.reason == "refused" and failure.code == 324
    assert letter.headers[dead_letters.REASON_HEADER] == "refused"
    assert handler.retries == []


def test_a_lost_authorisation_reaches_the_hook_as_such() -> None:
    handler = Recorder(outcomes.Permanent("reconnect your page", 190, auth=True))
    deliver(handler, give_up_hook=True)
    ((failure, _),) = handler.given_up
    assert failure.kind is retry_policy.FailureKind.AUTH


def test_throttled_waits_as_long_as_asked_without_spending_the_budget() -> None:
    handler = Recorder(outcomes.Throttled("slow down", wait_s=60))
    (copy,) = deliver(handler, attempt=3).outgoing  # the last attempt: still not given up
    # held over hops: the copy may not run before 60 s from now, nor is it meant to after 75 s
    now = time.time()
    # The header keeps milliseconds: rounding may add half of one.
    assert now + 55 <= float(copy.headers[retry_policy.NOT_BEFORE_HEADER]) <= now + 60.001
    assert tier_of(copy) <= 75
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 3
    assert len(handler.retries) == 1


def test_busy_looks_again_later_without_budget_or_record() -> None:
    handler = Recorder(outcomes.Busy(40))
    fate = deliver(handler, attempt=3)
    (copy,) = fate.outgoing
    assert fate.kind == "retry"
    assert float(copy.headers[retry_policy.NOT_BEFORE_HEADER]) >= time.time() + 35
    assert retry_policy.THROTTLES_HEADER not in copy.headers  # Busy never gives up
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 3
    assert handler.retries == []  # another attempt holds the image: nothing to record
    # Counted as a retry, not as Facebook throttling (albums_jobs_total's outcome label).
    assert fate.outcome == "retried"


OUTAGE = OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_a_store_outage_waits_in_a_tier_without_spending_the_budget() -> None:
    outage = OUTAGE
    fate = deliver(Recorder(outage), attempt=3)
    (copy,) = fate.outgoing
    assert fate.kind == "outage" and copy.exchange == topology.RETRY_EXCHANGE
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 3
    assert copy.headers[retry_policy.OUTAGE_HEADER] == 1


def test_outages_in_a_row_wait_longer_up_to_a_cap() -> None:
    waits = []
    headers: dict[str, Any] = {}
    for _ in range(10):
        (copy,) = decide(Recorder(OUTAGE).route(), Delivery(BODY, headers)).outgoing
        waits.append(tier_of(copy))
        headers = dict(copy.headers)
    assert waits == sorted(waits) and waits[0] == DELAYS[0]
    assert max(waits) == 30 and waits[-1] == 30


def test_a_failure_after_an_outage_forgets_the_outage() -> None:
    headers: dict[str, Any] = {retry_policy.OUTAGE_HEADER: 4}
    fate = deliver(Recorder(outcomes.Transient("503")), **headers)
    assert retry_policy.OUTAGE_HEADER not in fate.outgoing[0].headers


def test_a_hook_that_meets_the_outage_makes_it_an_outage_not_a_lost_message() -> None:
    def hook(*_args: Any) -> None:
        raise OperationalError("UPDATE", {}, Exception("store down"))

    handler = Recorder(outcomes.Permanent("refused"))
    route = Route(QUEUE, ImageUploadRequested, handler, RetryPolicy(DELAYS, 3), on_give_up=hook)
    fate = decide(route, Delivery(BODY, {}))
    assert fate.kind == "outage" and fate.outgoing[0].exchange == topology.RETRY_EXCHANGE


def test_the_consumer_sends_a_delivery_back_when_its_copy_is_not_confirmed() -> None:
    from shared.broker.consumer import Consumer

    publisher = FakePublisher()
    consumer = Consumer(
        "amqp://guest:guest@127.0.0.1:1/%2F",
        Recorder().route(),
        1,
        publisher=publisher,  # type: ignore[arg-type]
    )
    fate = deliver(Recorder(outcomes.Transient("503")))
    assert consumer._publish(fate) is True and publisher.published == list(fate.outgoing)
    publisher.failure = BrokerError("no confirm within 10 s")
    assert consumer._publish(fate) is False  # nack, requeue: the message is not lost
    assert consumer._publish(Fate()) is True  # a plain ack needs no broker round trip


def test_a_bug_spends_the_budget_and_ends_as_a_dead_letter_with_its_reason() -> None:
    """Unlike an outage, an unexpected exception is no reason to circle the tiers for ever."""
    first = deliver(Recorder(RuntimeError("bug")))
    assert first.kind == "retry"
    (copy,) = first.outgoing
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 2
    last = deliver(Recorder(RuntimeError("bug")), attempt=3)
    (letter,) = last.outgoing
    assert last.kind == "dead"
    assert "something went wrong on our side (error id " in letter.headers["dead-reason"]


def test_a_hook_that_fails_on_its_own_dead_letters_the_message_instead_of_circling() -> None:
    """A bug in the service's retry hook must not make the message wait for ever as if the
    store were away: it ends as a dead letter naming both failures."""

    def broken_hook(message: Any, failure: Any, step: Any) -> None:
        raise KeyError("bug in the hook")

    handler = Recorder(outcomes.Transient("503", 503))
    route = Route(
        QUEUE,
        ImageUploadRequested,
        handler,
        RetryPolicy(DELAYS, max_attempts=3),
        on_retry=broken_hook,
    )
    fate = decide(route, Delivery(BODY, {}))
    (letter,) = fate.outgoing
    assert fate.kind == "dead" and letter.exchange == topology.DEAD_EXCHANGE
    assert "and recording it failed (error id " in letter.headers["dead-reason"]


def test_a_hook_that_meets_an_outage_still_waits_it_out() -> None:
    def away(message: Any, failure: Any, step: Any) -> None:
        raise OUTAGE

    route = Route(
        QUEUE,
        ImageUploadRequested,
        Recorder(RuntimeError("bug")),
        RetryPolicy(DELAYS, max_attempts=3),
        on_retry=away,
    )
    assert decide(route, Delivery(BODY, {})).kind == "outage"


@pytest.mark.parametrize(
    ("raises", "hook", "outcome", "code"),
    [
        (None, False, "done", None),
        (outcomes.Permanent("rejected image", code=324), True, "dead_lettered", 324),
        (outcomes.Permanent("rejected image", code=324), False, "dead_lettered", 324),
        (outcomes.Transient("server error", code=2), False, "retried", 2),
        (outcomes.Throttled("slow down", wait_s=60, code=32), False, "throttled", 32),
    ],
)
def test_the_fate_names_its_metrics_outcome_and_code(
    raises: Exception | None, hook: bool, outcome: str, code: int | None
) -> None:
    fate = deliver(Recorder(raises), give_up_hook=hook)
    assert (fate.outcome, fate.code) == (outcome, code)


def test_poison_counts_as_a_dead_letter_without_a_code() -> None:
    fate = deliver(Recorder(), body=b"{not json")
    assert (fate.outcome, fate.code) == ("dead_lettered", None)
