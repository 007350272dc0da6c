"""What a handler raises to say how a message went, when it did not simply go through.

A handler returns normally to have its message acked. Otherwise it raises one of these and the
consumer runtime (`shared.policies.fate`) decides the message's fate through
`shared.policies.retry_policy`:

- `Transient`: try again later, spending one attempt of the budget;
- `Throttled`: the third party asked us to slow down: wait at least that long, no budget spent;
- `Permanent`: it will never succeed: dead-letter it (with its reason) at once;
- `Busy`: another attempt holds the work: look again later, no budget spent.

Anything else a handler raises (the store is down, a bug) is not the message's fault: the
runtime delays the message without spending its budget (see `shared.policies.fate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.policies.retry_policy import Failure, FailureKind


class Outcome(Exception):  # noqa: N818 - an outcome, not an error
    """How a message went; `failure` says it in the retry policy's terms. `copy_headers` go
    on its retry copy (the uploader's fencing number: `shared/contracts/fencing.py`)."""

    failure: Failure

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.copy_headers: dict[str, Any] = {}

    def copy_with(self, headers: Mapping[str, Any]) -> Outcome:
        self.copy_headers = {**self.copy_headers, **headers}
        return self


class Transient(Outcome):
    def __init__(self, reason: str, code: int | None = None, wait_s: float | None = None) -> None:
        super().__init__(Failure(FailureKind.TRANSIENT, reason, code, wait_s))


class Throttled(Outcome):
    def __init__(self, reason: str, wait_s: float | None = None, code: int | None = None) -> None:
        super().__init__(Failure(FailureKind.THROTTLED, reason, code, wait_s))


class Permanent(Outcome):
    """`auth` marks a lost authorisation: the service may stop the rest of the work too."""

    def __init__(self, reason: str, code: int | None = None, auth: bool = False) -> None:
        super().__init__(Failure(FailureKind.AUTH if auth else FailureKind.PERMANENT, reason, code))


class Busy(Outcome):
    def __init__(
        self, wait_s: float | None, reason: str = "another attempt holds the work"
    ) -> None:
        # No budget spent, as for throttling: the policy treats them alike.
        super().__init__(Failure(FailureKind.THROTTLED, reason, None, wait_s))


def of(failure: Failure) -> Outcome:
    """The outcome to raise for a classified failure (`failures.classify`, `mailer.classify`),
    carrying that failure as it is (its `in_doubt` too)."""
    outcome: Outcome
    if failure.kind is FailureKind.TRANSIENT:
        outcome = Transient(failure.reason, failure.code, failure.wait_s)
    elif failure.kind is FailureKind.THROTTLED:
        outcome = Throttled(failure.reason, failure.wait_s, failure.code)
    else:
        outcome = Permanent(failure.reason, failure.code, auth=failure.kind is FailureKind.AUTH)
    outcome.failure = failure
    return outcome
