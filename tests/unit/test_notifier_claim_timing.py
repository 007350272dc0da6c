"""The notifier's timing rule: the sent mark is retried while the claim is its sender's."""

from datetime import timedelta
from itertools import islice

import pytest
from pydantic import ValidationError

from services.notifier.claim_timing import MARGIN, backoff, check_lease, mark_deadline
from services.notifier.settings import NotifierSettings


def test_the_mark_stops_a_margin_before_the_claim_lapses() -> None:
    assert mark_deadline(100.0, timedelta(minutes=10)) == pytest.approx(100 + 600 * (1 - MARGIN))
    assert mark_deadline(0.0, timedelta(seconds=4)) < 4


def test_pauses_double_up_to_the_longest() -> None:
    assert list(islice(backoff(0.5, 30), 9)) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_the_default_lease_holds_the_longest_send_and_the_mark() -> None:
    check_lease(timedelta(minutes=10), smtp_timeout_s=20)


def test_a_lease_too_short_for_the_smtp_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="SMTP_TIMEOUT_S=20"):
        check_lease(timedelta(minutes=2), smtp_timeout_s=20)


def test_the_settings_refuse_a_lease_shorter_than_a_send_and_its_mark() -> None:
    settings = NotifierSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.claim_lease == timedelta(minutes=10)
    with pytest.raises(ValidationError, match="lease must hold at least 312 s"):
        NotifierSettings(_env_file=None, notifier_claim_lease_s=300)  # type: ignore[call-arg]
