"""The uploader's dead-letter drain on a real broker: letters the desk replayed or purged leave
the queue, waiting ones stay (moved to its tail), the broker's own letters get indexed, and a
pass looks at no more than its batch."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from services.uploader.dead_letter_drain import DeadLetterDrain
from shared.broker.dead_letter_queue import DeadLetterQueue
from shared.broker.publisher import Publisher
from shared.contracts import dead_letters, topology
from shared.store import Store

from .helpers import message_count, purge
from .test_replay import DLQ, UPLOADS, failed_album

pytestmark = pytest.mark.integration


@pytest.fixture()
def publisher(amqp_url: str) -> Iterator[Publisher]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), (1,))
    connection.close()
    purge(amqp_url, DLQ)
    publisher = Publisher(amqp_url)
    yield publisher
    publisher.close()
    purge(amqp_url, DLQ)


def _drain(store: Store, amqp_url: str, publisher: Publisher, batch: int) -> DeadLetterDrain:
    return DeadLetterDrain(
        store, [DeadLetterQueue(amqp_url, UPLOADS)], publisher.publish_confirmed, batch
    )


def test_handled_letters_leave_the_queue_and_waiting_ones_stay(
    sqlite_store: Store, amqp_url: str, publisher: Publisher
) -> None:
    album_id = failed_album(sqlite_store, amqp_url, count=3)
    ids = [letter.message_id for letter in sqlite_store.waiting_letters(album_id=album_id)]
    assert len(ids) == 3 and message_count(amqp_url, DLQ) == 3
    sqlite_store.settle_letters(ids[:1], "replayed", "op@example.com", "replay", "t")
    sqlite_store.settle_letters(ids[1:2], "purged", "op@example.com", "purge", "t")

    drained = _drain(sqlite_store, amqp_url, publisher, batch=100).drain_once()
    assert (drained.removed, drained.moved, drained.indexed) == (2, 1, 0)
    left = DeadLetterQueue(amqp_url, UPLOADS).browse()
    assert [letter.message_id for letter in left] == ids[2:]
    assert left[0].headers[dead_letters.REASON_HEADER] == "refused"
    # Nothing left to drain: the waiting letter stays, pass after pass.
    assert _drain(sqlite_store, amqp_url, publisher, 100).drain_once().removed == 0
    assert message_count(amqp_url, DLQ) == 1


def test_a_pass_looks_at_its_batch_and_the_next_pass_at_the_next(
    sqlite_store: Store, amqp_url: str, publisher: Publisher
) -> None:
    album_id = failed_album(sqlite_store, amqp_url, count=4)
    ids = [letter.message_id for letter in sqlite_store.waiting_letters(album_id=album_id)]
    sqlite_store.settle_letters(ids[2:], "purged", "op@example.com", "purge", "t")
    drain = _drain(sqlite_store, amqp_url, publisher, batch=2)
    first = drain.drain_once()  # the two waiting ones at the head: moved to the tail
    assert (first.removed, first.moved) == (0, 2)
    second = drain.drain_once()  # then the two purged ones
    assert (second.removed, second.moved) == (2, 0)
    assert sorted(
        x.message_id or "" for x in DeadLetterQueue(amqp_url, UPLOADS).browse()
    ) == sorted(ids[:2])


def test_letters_the_index_lacks_get_indexed(
    sqlite_store: Store, amqp_url: str, publisher: Publisher
) -> None:
    """Poison the runtime dead-lettered with no store at hand: the drain indexes it. With no
    replayed or purged letter to remove, a pass only looks: nothing moves."""
    letter = dead_letters.dead_letter(UPLOADS, b"{bad json", {}, "undecodable body", None, 1)
    publisher.publish_confirmed([letter])
    drained = _drain(sqlite_store, amqp_url, publisher, 100).drain_once()
    assert (drained.indexed, drained.moved, drained.removed) == (1, 0, 0)
    assert [x.message_id for x in DeadLetterQueue(amqp_url, UPLOADS).browse()] == [
        letter.message_id
    ]
    indexed = sqlite_store.dead_letter(letter.message_id)
    assert indexed is not None and indexed.group == "poison"
    assert indexed.reason == "undecodable body"
    assert _drain(sqlite_store, amqp_url, publisher, 100).drain_once().indexed == 0
