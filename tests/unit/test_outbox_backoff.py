"""The wait of an outbox row the broker refused: doubling, capped, never given up."""

from datetime import timedelta

import pytest

from shared.store.outbox_backoff import FIRST_WAIT, MAX_WAIT, refusal_backoff


def test_the_wait_doubles_with_each_refusal() -> None:
    assert [refusal_backoff(n).total_seconds() for n in range(1, 7)] == [5, 10, 20, 40, 80, 160]


def test_the_wait_stops_growing_at_the_cap() -> None:
    assert refusal_backoff(7) == MAX_WAIT == timedelta(minutes=5)
    assert refusal_backoff(10_000) == MAX_WAIT  # a row refused for days still gets tried


def test_the_first_wait_is_longer_than_the_relays_round() -> None:
    assert FIRST_WAIT > timedelta(seconds=2)


@pytest.mark.parametrize("attempts", [0, -1])
def test_a_wait_before_any_refusal_is_a_mistake(attempts: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        refusal_backoff(attempts)
