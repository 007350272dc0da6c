"""What a handler raises to say how a message went, when it did not simply go through.

A handler returns normally to have its message acked. Otherwise it raises one of these and the
consumer runtime (`shared.fate`) decides the message's fate through `shared.retry_policy`:

- `Transient`: try again later, spending one attempt of the budget;
- `Throttled`: the third party asked us to slow down: wait at least that long, no budget spent;
- `Permanent`: it will never succeed: dead-letter it (with its reason) at once;
- `Busy`: another attempt holds the work: look again later, no budget spent.

Anything else a handler raises (the store is down, a bug) is not the message's fault: the
runtime delays the message without spending its budget (see `shared.fate`).
"""

from __future__ import annotations

from shared.retry_policy import Failure, FailureKind


class Outcome(Exception):  # noqa: N818 - an outcome, not an error
    """How a message went; `failure` says it in the retry policy's terms."""

    failure: Failure

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class Transient(Outcome):
    def __init__(self, reason: str, code: int | None = None, wait_s: float | None = None) -> None:
        super().__init__(Failure(FailureKind.TRANSIENT, reason, code, wait_s))


class Throttled(Outcome):
    def __init__(self, reason: str, wait_s: float | None = None, code: int | None = None) -> None:
        super().__init__(Failure(FailureKind.THROTTLED, reason, code, wait_s))


class Permanent(Outcome):
    """`auth` marks a lost authorisation: the service may stop the rest of the work too."""

    def __init__(self, reason: str, code: int | None = None, auth: bool = False) -> None:
        super().__init__(Failure(FailureKind.AUTH if auth else FailureKind.PERMANENT, reason,
                                 code))


class Busy(Outcome):
    def __init__(self, wait_s: float | None, reason: str = "another attempt holds the work"
                 ) -> None:
        # No budget spent, as for throttling: the policy treats them alike.
        super().__init__(Failure(FailureKind.THROTTLED, reason, None, wait_s))


def of(failure: Failure) -> Outcome:
    """The outcome to raise for a classified failure (`failures.classify`, `mailer.classify`)."""
    if failure.kind is FailureKind.TRANSIENT:
        return Transient(failure.reason, failure.code, failure.wait_s)
    if failure.kind is FailureKind.THROTTLED:
        return Throttled(failure.reason, failure.wait_s, failure.code)
    return Permanent(failure.reason, failure.code, auth=failure.kind is FailureKind.AUTH)
