"""Each row of a published batch is judged by its own publish's result."""

from shared.broker.errors import BrokerError, Refused, Unroutable
from shared.delivery.outbox import sort_outcomes
from shared.store import OutboxMessage


def rows(*ids: int) -> list[OutboxMessage]:
    return [
        OutboxMessage(id=i, exchange="x", routing_key="k", message_id=f"m{i}", body=b"")
        for i in ids
    ]


def test_a_refusal_leaves_its_neighbours_confirmed() -> None:
    outcomes = sort_outcomes(rows(1, 2, 3), [None, Refused("broker refused message m2"), None])
    assert outcomes.confirmed == [1, 3]
    assert outcomes.refused == {2: "broker refused message m2"}
    assert outcomes.unsent == {}


def test_an_unroutable_message_is_a_refusal() -> None:
    outcomes = sort_outcomes(rows(1), [Unroutable("message m1 reached no queue")])
    assert outcomes.refused == {1: "message m1 reached no queue"}


def test_a_broker_away_is_no_refusal_of_the_message() -> None:
    # No connection, no confirm in time: nothing about the message itself, so no backoff.
    outcomes = sort_outcomes(
        rows(1, 2),
        [BrokerError("broker unavailable: no connection"), BrokerError("no confirm within 10 s")],
    )
    assert outcomes.confirmed == [] and outcomes.refused == {}
    assert set(outcomes.unsent) == {1, 2}
