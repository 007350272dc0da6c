"""The lost-message sweeper against the real broker and store: an image whose confirmed message
the broker lost is sent again once the work queue is empty, and only then."""

import functools
import time
import uuid
from datetime import timedelta

import pika
import pytest

from services.uploader.sweeper import LostMessageSweeper
from shared import messages, topology
from shared.broker import connection as broker
from shared.broker.publisher import Publisher
from shared.outbox import Outbox
from shared.store.tables import utcnow

from .helpers import get_all

pytestmark = pytest.mark.integration

QUIET = timedelta(seconds=0.5)


@pytest.fixture()
def sweeper(sqlite_store, amqp_url, work_queue):
    publisher = Publisher(amqp_url)
    ready = functools.partial(broker.ready_count, amqp_url, work_queue)
    yield LostMessageSweeper(sqlite_store, Outbox(sqlite_store, publisher), ready, QUIET)
    publisher.close()


def lost_album(store, count):
    """An album whose messages the broker confirmed, then lost: published, yet in no queue."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(user.id, "Lost", None,
                                        [f"{user.prefix}{n}.png" for n in range(count)])
    store.mark_published([row.id for row in rows])
    return album_id, [image.id for image in store.album(album_id).images]


def image_ids(taken):
    return sorted(messages.decode(body).image_id for _props, body in taken)


def test_a_waiting_image_whose_message_was_lost_is_sent_again_once(sqlite_store, sweeper,
                                                                   amqp_url, work_queue):
    _, ids = lost_album(sqlite_store, 2)
    assert sweeper.sweep_once() == 0  # not quiet long enough: its message may be on its way
    time.sleep(QUIET.total_seconds() + 0.1)
    assert sweeper.sweep_once() == 2
    assert image_ids(get_all(amqp_url, work_queue)) == ids
    assert sweeper.sweep_once() == 0  # touched: quiet again only after another while


def test_nothing_is_sent_again_while_the_work_queue_holds_messages(sqlite_store, sweeper,
                                                                   amqp_url, work_queue):
    lost_album(sqlite_store, 1)
    time.sleep(QUIET.total_seconds() + 0.1)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().basic_publish("", work_queue, b"another image's message")
    connection.close()
    assert sweeper.sweep_once() == 0
    assert [body for _props, body in get_all(amqp_url, work_queue)] == [
        b"another image's message"]


def test_only_images_still_waiting_past_their_time_count_as_lost(store):
    album_id, (queued, uploaded, failed, due, later) = lost_album(store, 5)
    for image in (uploaded, failed, due, later):
        store.start_attempt(image)
    store.record_uploaded(uploaded, "photo-1")
    store.record_failed(failed, "refused", 324)
    store.record_retrying(due, "5xx", 2, utcnow() - timedelta(seconds=1))
    store.record_retrying(later, "5xx", 2, utcnow() + timedelta(hours=1))
    rows = store.requeue_lost(timedelta(milliseconds=-1), limit=10_000)
    # The PostgreSQL database is the session's: other tests' waiting images count too.
    mine = [m for m in (messages.decode(row.body) for row in rows) if m.album_id == album_id]
    assert sorted(m.image_id for m in mine) == [queued, due]
    assert {row.routing_key for row in rows} == {topology.IMAGE_UPLOADS.routing_key}
