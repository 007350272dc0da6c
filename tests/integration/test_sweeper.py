"""The lost-message sweeper against the real broker and store: an image whose message is gone
(lost by the broker, or dead-lettered while the image was uploading) is sent again, decided
from the store alone, so also under a steady backlog, which is not doubled."""

import functools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pika
import pytest

from services.uploader.sweeper import LostMessageSweeper
from shared.broker import connection as broker
from shared.broker.publisher import Publisher
from shared.contracts import topology
from shared.delivery.outbox import Outbox
from shared.store import Store
from tests.integration.helpers import upload_of
from tests.present import present

from .helpers import get_all, message_count, wait_for

pytestmark = pytest.mark.integration

QUIET = timedelta(seconds=0.5)
#: The uploading image's in-flight window (attempt start + Graph timeout + margin), shortened.
WINDOW = timedelta(seconds=0.3)


@pytest.fixture()
def sweeper(sqlite_store: Store, amqp_url: str, work_queue: str) -> Iterator[LostMessageSweeper]:
    publisher = Publisher(amqp_url)
    ready = functools.partial(broker.ready_count, amqp_url, work_queue)
    yield LostMessageSweeper(sqlite_store, Outbox(sqlite_store, publisher), ready, QUIET, WINDOW)
    publisher.close()


def lost_album(store: Store, count: int) -> tuple[str, list[int]]:
    """An album whose messages the broker confirmed, then lost: published, yet in no queue."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Lost", None, [f"{user.prefix}{n}.png" for n in range(count)]
    )
    store.mark_published([row.id for row in rows])
    return album_id, [image.id for image in present(store.album(album_id)).images]


def image_ids(taken: list[tuple[Any, bytes]]) -> list[int]:
    return sorted(upload_of(body).image_id for _props, body in taken)


def test_a_waiting_image_whose_message_was_lost_is_sent_again_once(
    sqlite_store: Store, sweeper: LostMessageSweeper, amqp_url: str, work_queue: str
) -> None:
    _, ids = lost_album(sqlite_store, 2)
    assert sweeper.sweep_once() == 0  # not quiet long enough: its message may be on its way
    time.sleep(QUIET.total_seconds() + 0.1)
    assert sweeper.sweep_once() == 2
    assert image_ids(get_all(amqp_url, work_queue)) == ids
    assert sweeper.sweep_once() == 0  # touched: quiet again only after another while


def test_under_a_steady_backlog_only_what_the_queue_went_past_is_sent_again(
    sqlite_store: Store, sweeper: LostMessageSweeper, amqp_url: str, work_queue: str
) -> None:
    _, (lost,) = lost_album(sqlite_store, 1)
    time.sleep(QUIET.total_seconds() + 0.1)
    # A backlog written after it: its messages wait in the queue, behind what is taken.
    user, _ = sqlite_store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    _, rows = sqlite_store.create_album(
        user.id, "Backlog", None, [f"{user.prefix}{n}.png" for n in range(5)]
    )
    publisher = Publisher(amqp_url)
    publisher.publish_confirmed([row.outgoing() for row in rows[2:]])
    publisher.close()
    sqlite_store.mark_published([row.id for row in rows])
    taken, later, *later_ones = [upload_of(row.body).image_id for row in rows]
    sqlite_store.start_attempt(taken)  # the queue has reached messages written after `lost`'s
    assert sweeper.sweep_once() == 1
    assert image_ids(get_all(amqp_url, work_queue)) == sorted([lost, *later_ones])
    time.sleep(QUIET.total_seconds() + 0.1)
    sqlite_store.start_attempt(later)  # still busy with the backlog, which waited QUIET too
    assert sweeper.sweep_once() == 0


def test_a_stalled_consumer_with_a_backlog_has_nothing_sent_again(
    sqlite_store: Store, sweeper: LostMessageSweeper, amqp_url: str, work_queue: str
) -> None:
    # Nothing was taken for a while (the consumer pauses after a store outage) and the queue
    # still holds messages: sending every waiting image again would double the backlog.
    lost_album(sqlite_store, 3)
    time.sleep(QUIET.total_seconds() + 0.1)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().basic_publish("", work_queue, b"a message of the backlog")
    connection.close()
    assert sweeper.sweep_once() == 0
    get_all(amqp_url, work_queue)  # the queue empties: now their messages are known gone
    assert sweeper.sweep_once() == 3


def test_an_uploading_image_whose_message_was_dead_lettered_is_sent_again(
    sqlite_store: Store, sweeper: LostMessageSweeper, amqp_url: str, work_queue: str
) -> None:
    # Its attempt started, then every delivery met a store outage: the broker dead-lettered
    # the message at its delivery limit and the image stayed `uploading`, with no message.
    album_id, (stuck,) = lost_album(sqlite_store, 1)
    assert sqlite_store.start_attempt(stuck, timedelta(0)).attempt == 1
    stop = threading.Event()
    thread = sweeper.start(stop, every_s=0.2)
    try:
        # Within the in-flight window, plus the quiet time, plus one sweep interval.
        wait_for(
            lambda: message_count(amqp_url, work_queue) > 0,
            timeout=5,
            what="the stuck image's new message",
        )
    finally:
        stop.set()
        thread.join(timeout=5)
    assert image_ids(get_all(amqp_url, work_queue)) == [stuck]
    assert present(sqlite_store.album(album_id)).images[0].state == "queued"


def test_only_images_still_waiting_past_their_time_count_as_lost(store: Store) -> None:
    album_id, (queued, uploaded, failed, due, later) = lost_album(store, 5)
    for image in (uploaded, failed, due, later):
        store.start_attempt(image)
    store.record_uploaded(uploaded, "photo-1")
    store.record_failed(failed, "refused", 324)
    store.record_retrying(due, "5xx", 2, timedelta(seconds=-1))
    store.record_retrying(later, "5xx", 2, timedelta(hours=1))
    rows = store.requeue_lost(timedelta(milliseconds=-1), limit=10_000)
    # The PostgreSQL database is the session's: other tests' waiting images count too.
    mine = [m for m in (upload_of(row.body) for row in rows) if m.album_id == album_id]
    assert sorted(m.image_id for m in mine) == [queued, due]
    assert {row.routing_key for row in rows} == {topology.IMAGE_UPLOADS.routing_key}
