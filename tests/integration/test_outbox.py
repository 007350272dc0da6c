"""The outbox: an album accepted while the broker is away is published once it is back."""

import uuid
from collections.abc import Sequence
from datetime import timedelta

import pika
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dev.rabbit_admin import Broker
from shared.broker.errors import BrokerError, Refused, Unroutable
from shared.broker.publisher import Publisher
from shared.contracts.outgoing import Outgoing
from shared.delivery.outbox import Outbox
from shared.store import OutboxMessage, Store
from tests.conftest import VhostMaker
from tests.integration.helpers import upload_of
from tests.present import present

from .helpers import get_all, message_count

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_an_album_accepted_without_a_broker_is_relayed_later(
    sqlite_store: Store, amqp_url: str, work_queue: str
) -> None:
    user, _ = sqlite_store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    away = Publisher("amqp://guest:guest@127.0.0.1:1/%2F")
    try:
        keys = [user.prefix + "a", user.prefix + "b"]
        _, rows = sqlite_store.create_album(user.id, "t", None, keys)
        assert Outbox(sqlite_store, away, timeout_s=0.5).send_rows(rows) is False
    finally:
        away.close()
    assert sqlite_store.unpublished_count() == 2

    back = Publisher(amqp_url)
    try:
        relay = Outbox(sqlite_store, back, grace=timedelta(0))
        assert relay.relay_once() == 2
        assert relay.relay_once() == 0
    finally:
        back.close()
    assert sqlite_store.unpublished_count() == 0
    bodies = [upload_of(body) for _, body in get_all(amqp_url, work_queue)]
    assert sorted(b.key for b in bodies) == [user.prefix + "a", user.prefix + "b"]


@pytest.mark.slow
def test_a_failed_relay_round_hands_its_rows_back_for_the_next_round(
    store: Store, amqp_url: str, work_queue: str
) -> None:
    # The session's PostgreSQL database keeps other tests' rows: publish those out of the way.
    lease = timedelta(seconds=30)
    store.mark_published([row.id for row in store.claim_unpublished(timedelta(0), lease)])
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    store.create_album(user.id, "t", None, [user.prefix + "a", user.prefix + "b"])

    away = Publisher("amqp://guest:guest@127.0.0.1:1/%2F")
    try:
        assert Outbox(store, away, timeout_s=0.5, grace=timedelta(0)).relay_once() == 0
    finally:
        away.close()
    # Leased for 30 s, they would still be claimed; handed back, the next round takes them.
    back = Publisher(amqp_url)
    try:
        assert Outbox(store, back, grace=timedelta(0)).relay_once() == 2
    finally:
        back.close()
    assert store.unpublished_count() == 0
    bodies = [upload_of(body) for _, body in get_all(amqp_url, work_queue)]
    assert sorted(b.key for b in bodies) == [user.prefix + "a", user.prefix + "b"]


# -- one refused row in a batch (issue 9, case 6) ---------------------------------------------

EXCHANGE = "outbox-test"
GOOD, FULL, NOWHERE = "good", "full", "nowhere"


@pytest.fixture()
def refusing_url(broker: Broker, make_vhost: VhostMaker) -> str:
    """A vhost of its own with an exchange that routes GOOD to a queue that takes everything,
    FULL to a queue that refuses everything (max length 0, reject-publish: the broker nacks),
    and NOWHERE to no queue (the message comes back unroutable)."""
    url = broker.url(make_vhost())
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, "direct", durable=True)
        channel.queue_declare(GOOD, durable=True)
        channel.queue_declare(
            FULL, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        channel.queue_bind(GOOD, EXCHANGE, GOOD)
        channel.queue_bind(FULL, EXCHANGE, FULL)
    finally:
        connection.close()
    return url


def add_rows(store: Store, routing_keys: Sequence[str]) -> list[OutboxMessage]:
    """Outbox rows for EXCHANGE, one per routing key, as a transaction would have left them."""
    rows = [
        OutboxMessage(
            exchange=EXCHANGE,
            routing_key=key,
            message_id=uuid.uuid4().hex,
            body=f"{n}:{key}".encode(),
            headers={},
        )
        for n, key in enumerate(routing_keys)
    ]
    with Session(store.engine, expire_on_commit=False) as session, session.begin():
        session.add_all(rows)
    return rows


def outbox_row(store: Store, row_id: int) -> OutboxMessage:
    with Session(store.engine) as session:
        return session.scalars(select(OutboxMessage).where(OutboxMessage.id == row_id)).one()


@pytest.mark.parametrize("refused_key", [NOWHERE, FULL], ids=["unroutable", "nacked"])
def test_one_refused_row_does_not_send_the_rest_of_its_batch_again(
    sqlite_store: Store, refusing_url: str, refused_key: str
) -> None:
    good_1, refused, good_2 = add_rows(sqlite_store, [GOOD, refused_key, GOOD])
    publisher = Publisher(refusing_url)
    try:
        relay = Outbox(sqlite_store, publisher, timeout_s=5, grace=timedelta(0))
        relayed = [relay.relay_once() for _ in range(3)]
    finally:
        publisher.close()
    # Each good row reached its queue once, in the first round; the refused one waits.
    assert message_count(refusing_url, GOOD) == 2
    assert relayed == [2, 0, 0]
    assert sqlite_store.unpublished_count() == 1
    assert outbox_row(sqlite_store, good_1.id).published_at is not None
    assert outbox_row(sqlite_store, good_2.id).published_at is not None
    waiting = outbox_row(sqlite_store, refused.id)
    assert waiting.published_at is None
    # Tried once: the later rounds left it alone (it backs off), and it says why.
    assert waiting.attempts == 1
    assert waiting.next_attempt_at is not None
    assert refused.message_id in (waiting.last_error or "")


def test_a_refused_row_is_tried_again_once_due_and_backs_off_further(
    sqlite_store: Store, refusing_url: str
) -> None:
    (refused,) = add_rows(sqlite_store, [NOWHERE])
    publisher = Publisher(refusing_url)
    try:
        relay = Outbox(sqlite_store, publisher, timeout_s=5, grace=timedelta(0))
        assert relay.relay_once() == 0
        first = outbox_row(sqlite_store, refused.id)
        # Its time comes (moved back rather than waited for): the next round takes it again.
        with Session(sqlite_store.engine) as session, session.begin():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == refused.id)
                .values(next_attempt_at=present(first.next_attempt_at) - timedelta(hours=1))
            )
        assert relay.relay_once() == 0
    finally:
        publisher.close()
    second = outbox_row(sqlite_store, refused.id)
    assert second.attempts == 2 and second.published_at is None
    assert present(second.next_attempt_at) > present(first.next_attempt_at)


def test_publish_after_commit_marks_the_confirmed_rows_and_holds_back_the_refused(
    sqlite_store: Store, refusing_url: str
) -> None:
    good_1, refused, good_2 = add_rows(sqlite_store, [GOOD, FULL, GOOD])
    publisher = Publisher(refusing_url)
    try:
        outbox = Outbox(sqlite_store, publisher, timeout_s=5, grace=timedelta(0))
        assert outbox.send_rows([good_1, refused, good_2]) is False  # not all of them went out
        assert outbox.relay_once() == 0  # the confirmed are done, the refused one waits
    finally:
        publisher.close()
    assert message_count(refusing_url, GOOD) == 2
    assert sqlite_store.unpublished_count() == 1
    waiting = outbox_row(sqlite_store, refused.id)
    assert waiting.attempts == 1 and waiting.last_error


def test_the_publisher_tells_each_messages_own_outcome(refusing_url: str) -> None:
    publisher = Publisher(refusing_url)
    try:
        results = publisher.publish_outcomes(
            [Outgoing(EXCHANGE, key, b"x") for key in (GOOD, NOWHERE, FULL, GOOD)], timeout=5
        )
    finally:
        publisher.close()
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], Unroutable)
    assert isinstance(results[2], Refused) and not isinstance(results[2], Unroutable)
    assert message_count(refusing_url, GOOD) == 2


def test_without_a_broker_every_message_says_so_and_none_is_a_refusal() -> None:
    away = Publisher("amqp://guest:guest@127.0.0.1:1/%2F")
    try:
        results = away.publish_outcomes(
            [Outgoing(EXCHANGE, GOOD, b"x")] * 2, timeout=0.5, connect_wait=0.5
        )
    finally:
        away.close()
    assert len(results) == 2
    assert all(isinstance(r, BrokerError) and not isinstance(r, Refused) for r in results)
