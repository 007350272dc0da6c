"""Every header a retry copy carries must be one pika can write: a copy it refuses to encode
is never published, and the delivery it stood for goes back to the queue for ever."""

from __future__ import annotations

import pika

from shared.contracts import topology
from shared.policies import retry_policy
from shared.policies.retry_policy import Failure, FailureKind, RetryPolicy


def encodable(headers: dict[str, object]) -> bool:
    pika.BasicProperties(headers=headers).encode()
    return True


def test_a_throttled_copy_with_a_named_wait_can_be_published() -> None:
    policy = RetryPolicy((5, 30, 120), max_attempts=6)
    failure = Failure(FailureKind.THROTTLED, "page limit (code 32)", 32, wait_s=90 * 60)
    step = retry_policy.next_step(failure, 1, policy.delays, policy.max_attempts)
    assert isinstance(step, retry_policy.RetryLater)
    marks = retry_policy.throttle_marks(step, {}, now=1_700_000_000.25)
    assert marks and encodable(marks)
    start, end = retry_policy.not_before(marks) or (0.0, 0.0)
    assert step.hold_s is not None
    assert start == 1_700_000_000.25 + step.hold_s and end >= start


def test_a_hintless_throttle_copy_can_be_published() -> None:
    policy = RetryPolicy((5, 30, 120), max_attempts=6)
    failure = Failure(FailureKind.THROTTLED, "app limit (code 4)", 4)
    step = retry_policy.next_step(failure, 1, policy.delays, policy.max_attempts)
    assert isinstance(step, retry_policy.RetryLater)
    marks = retry_policy.throttle_marks(step, {}, now=1_700_000_000.5)
    copy = retry_policy.retry_message(topology.IMAGE_UPLOADS, b"{}", {}, step, throttle=marks)
    assert retry_policy.NOT_BEFORE_HEADER in copy.headers
    assert retry_policy.THROTTLED_SINCE_HEADER in copy.headers
    assert encodable(dict(copy.headers))
