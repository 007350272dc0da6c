"""How long an outbox row the broker refused waits before the relay sends it again.

A refusal (a nack from a queue at its max length, a message no queue is bound for) usually
lasts until an operator or a consumer changes something, so sending again at the relay's
two-second pace only floods the log and the broker. The wait doubles with each refusal up to a
cap: a row is never given up (nothing is dropped), and once the cause is gone it goes out
within the cap.
"""

from __future__ import annotations

from datetime import timedelta

#: The wait after the first refusal.
FIRST_WAIT = timedelta(seconds=5)
#: The longest wait between two tries of one row.
MAX_WAIT = timedelta(minutes=5)


def refusal_backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th refusal of one row (1 for the first)."""
    if attempts < 1:
        raise ValueError(f"attempts counts refusals from 1, not {attempts}")
    # Capped before doubling further: the exponent of a long-refused row stays small.
    doublings = min(attempts - 1, 16)
    # int(): typeshed types `int ** int` as Any (a negative exponent would give a float).
    return min(FIRST_WAIT * int(2**doublings), MAX_WAIT)
