"""How long a notifier's claim on a settle lasts, and until when its sender tries to record
the mail it sent: plain functions.

The rule (a sent mark that gives up before the claim lapses is what mailed users twice):

- A claim lapses `lease` after it was taken, by the store's clock; only then may another
  notifier take it over and mail again.
- Its sender retries the sent mark, with capped backoff, as long as the claim is its own: until
  `MARGIN` of the lease before it lapses. The sender counts on its own monotonic clock from
  just before it asked for the claim, so its reckoning ends no later than the store's; the
  margin leaves the last try time to land (a PostgreSQL connect may take 5 s).
- The longest send must fit in the lease with as much time again left for the mark
  (`check_lease`). smtplib's timeout bounds each wait on the relay, and a send waits
  `SMTP_WAITS` times (connect, greeting, EHLO, MAIL, RCPT, DATA, end of data).

A store away for longer than that still leaves the mail unrecorded: the sender then acks the
settle (the user has the mail) rather than have it delivered again, which would mail again once
the claim lapsed. The mark is fenced by the claim's id, so a sender that lost its claim cannot
mark or release the next sender's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta

#: The part of the lease kept free at its end: the mark is not retried in it.
MARGIN = 0.1
#: Waits on the relay in one send, each bounded by the SMTP timeout.
SMTP_WAITS = 7


def mark_deadline(claim_asked_at: float, lease: timedelta) -> float:
    """The monotonic time after which the sender no longer retries the sent mark."""
    return claim_asked_at + lease.total_seconds() * (1 - MARGIN)


def backoff(first_s: float, longest_s: float) -> Iterator[float]:
    """Pauses between tries: doubling from `first_s`, never above `longest_s`."""
    pause = first_s
    while True:
        yield pause
        pause = min(pause * 2, longest_s)


def check_lease(lease: timedelta, smtp_timeout_s: float) -> None:
    """ValueError unless the lease holds the longest send and as long again for the mark."""
    longest_send_s = SMTP_WAITS * smtp_timeout_s
    if lease.total_seconds() * (1 - MARGIN) < 2 * longest_send_s:
        raise ValueError(
            f"a notifier's claim lease of {lease.total_seconds():g} s is too short for "
            f"SMTP_TIMEOUT_S={smtp_timeout_s:g}: a send may take {longest_send_s:g} s, and the "
            f"lease must hold at least {math.ceil(2 * longest_send_s / (1 - MARGIN))} s"
        )
