"""Replaying dead letters on a real broker and store: the album re-opens, a fresh upload
message goes out, the dead letter is gone; poison goes back as it was; purge removes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.publisher import Publisher
from shared.contracts import dead_letters, messages, topology
from shared.contracts.outgoing import Outgoing
from shared.delivery.outbox import Outbox
from shared.delivery.replay import Replayed, Replayer
from shared.store import Store
from tests.integration.helpers import upload_of
from tests.present import present

from .helpers import get_all, message_count, purge

pytestmark = pytest.mark.integration

UPLOADS = topology.IMAGE_UPLOADS
DLQ = topology.dead_letter_queue_name(UPLOADS)


@pytest.fixture()
def replayer(sqlite_store: Store, amqp_url: str) -> Iterator[Replayer]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), (1,))
    connection.close()
    purge(amqp_url, UPLOADS.name, DLQ)
    publisher = Publisher(amqp_url)
    yield Replayer(sqlite_store, Outbox(sqlite_store, publisher), amqp_url)
    publisher.close()
    purge(amqp_url, UPLOADS.name, DLQ)


def failed_album(store: Store, publisher_url: str, count: int = 2) -> str:
    """An album whose images all failed, with their dead letters in the queue."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "t", None, [f"{user.prefix}{n}.png" for n in range(count)]
    )
    publisher = Publisher(publisher_url)
    try:
        for row in rows:
            image_id = upload_of(row.body).image_id
            store.start_attempt(image_id)
            # The letter keeps the headers of the delivery that died (its fencing number).
            letter = dead_letters.dead_letter(UPLOADS, row.body, row.headers, "refused", 324, 1)
            for row in store.record_failed(image_id, "refused", 324, letter):
                if row.exchange == topology.DEAD_EXCHANGE:
                    publisher.publish_confirmed([row.outgoing()])
    finally:
        publisher.close()
    return album_id


def test_replaying_an_album_reopens_it_and_empties_its_dead_letters(
    replayer: Replayer, sqlite_store: Store, amqp_url: str
) -> None:
    album_id = failed_album(sqlite_store, amqp_url)
    other = failed_album(sqlite_store, amqp_url, count=1)
    assert present(sqlite_store.album(album_id)).state == "done_with_failures"
    assert [letter.album_id for letter in replayer.queue().browse()].count(album_id) == 2

    assert replayer.replay(lambda letter: letter.album_id == album_id).taken == 2
    album = present(sqlite_store.album(album_id))
    assert album.state == "publishing"
    assert {i.state for i in album.images} == {"queued"}
    sent = [upload_of(body) for _, body in get_all(amqp_url, UPLOADS.name)]
    assert sorted(m.image_id for m in sent) == sorted(i.id for i in album.images)
    assert [letter.album_id for letter in replayer.queue().browse()] == [other]


def test_the_albums_retry_button_reopens_only_failed_images(
    replayer: Replayer, sqlite_store: Store, amqp_url: str
) -> None:
    album_id = failed_album(sqlite_store, amqp_url)
    assert replayer.retry_album(album_id) == 2
    assert replayer.retry_album(album_id) == 0
    sent = [messages.decode(body).album_id for _, body in get_all(amqp_url, UPLOADS.name)]
    assert sent == [album_id] * 2
    # The button leaves the letters where they are (reading the queue is the CLI's job).
    assert message_count(amqp_url, DLQ) == 2


def test_the_retry_button_reads_no_dead_letters(
    replayer: Replayer, sqlite_store: Store, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's retry does work proportional to its album, not to the dead-letter queue:
    with thousands of other albums' letters queued it takes none of them off the broker."""
    album_id = failed_album(sqlite_store, amqp_url)
    publisher = Publisher(amqp_url)
    try:
        others = [
            dead_letters.dead_letter(
                UPLOADS,
                messages.encode(
                    messages.ImageUploadRequested(
                        album_id=uuid.uuid4().hex, image_id=n + 1, key=f"k{n}"
                    )
                ),
                {},
                "refused",
                324,
                1,
            )
            for n in range(3000)
        ]
        publisher.publish_confirmed(others, timeout=60)
    finally:
        publisher.close()
    assert message_count(amqp_url, DLQ) == 3002
    gets: list[int] = []
    real_get = BlockingChannel.basic_get

    def counted_get(self: BlockingChannel, *args: Any, **kwargs: Any) -> Any:
        gets.append(1)
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(BlockingChannel, "basic_get", counted_get)

    assert replayer.retry_album(album_id) == 2
    monkeypatch.undo()
    assert len(gets) == 0, f"the retry read {len(gets)} dead letters"
    assert present(sqlite_store.album(album_id)).state == "publishing"


def test_a_letter_of_a_retried_image_replays_as_stale_and_sends_nothing(
    replayer: Replayer, sqlite_store: Store, amqp_url: str
) -> None:
    album_id = failed_album(sqlite_store, amqp_url, count=1)
    assert replayer.retry_album(album_id) == 1
    ((_, body),) = get_all(amqp_url, UPLOADS.name)
    image_id = upload_of(body).image_id
    sqlite_store.start_attempt(image_id)
    sqlite_store.record_uploaded(image_id, "photo-1")

    settled = present(sqlite_store.album(album_id))
    assert settled.state == "done"

    # The operator replays every letter later: the retried image's is stale.
    assert replayer.replay(lambda letter: True) == Replayed(taken=1, stale=1)
    assert get_all(amqp_url, UPLOADS.name) == []
    assert message_count(amqp_url, DLQ) == 0
    album = present(sqlite_store.album(album_id))
    assert album.images[0].state == "uploaded" and album.images[0].photo_id == "photo-1"
    assert (album.state, album.settle_seq) == ("done", settled.settle_seq)  # not re-opened


@pytest.mark.parametrize("since", ["queued", "uploading", "retrying"])
def test_a_letter_of_a_retried_image_on_its_way_replays_as_stale_and_sends_nothing(
    since: str, replayer: Replayer, sqlite_store: Store, amqp_url: str
) -> None:
    """The album page retried the image and its fresh message is on its way (still queued,
    being uploaded, or waiting out a retry tier): the operator's replay of its old letter must
    not send the image a second message."""
    album_id = failed_album(sqlite_store, amqp_url, count=1)
    assert replayer.retry_album(album_id) == 1
    ((props, body),) = get_all(amqp_url, UPLOADS.name)  # the uploader has it
    image_id = upload_of(body).image_id
    if since != "queued":
        assert sqlite_store.start_attempt(image_id, fence=props.headers["album-fence"]).attempt
    if since == "retrying":
        sqlite_store.record_retrying(
            image_id, "Facebook had a temporary error (code 2)", 2, timedelta(seconds=30)
        )
    before = sqlite_store.image(image_id)

    assert replayer.replay(lambda letter: True) == Replayed(taken=1, stale=1)
    resent = get_all(amqp_url, UPLOADS.name)
    assert resent == [], f"the stale letter sent {len(resent)} upload messages"
    assert message_count(amqp_url, DLQ) == 0
    assert sqlite_store.image(image_id) == before


def test_poison_replays_as_it_was_and_purge_removes(replayer: Replayer, amqp_url: str) -> None:
    publisher = Publisher(amqp_url)
    try:
        publisher.publish_confirmed(
            [dead_letters.dead_letter(UPLOADS, b"{bad json", {}, "poison", None, 1)]
        )
    finally:
        publisher.close()
    (letter,) = replayer.queue().browse()
    assert letter.album_id is None and letter.reason == "poison"
    assert replayer.replay(lambda _: True) == Replayed(taken=1, stale=0)
    ((props, body),) = get_all(amqp_url, UPLOADS.name)
    assert body == b"{bad json" and not any(k.startswith("dead-") for k in props.headers or {})

    publisher = Publisher(amqp_url)
    try:
        publisher.publish_confirmed([Outgoing(topology.DEAD_EXCHANGE, UPLOADS.routing_key, b"x")])
    finally:
        publisher.close()
    assert replayer.purge(lambda _: True) == 1
    assert replayer.queue().browse() == []


def stuck_album(store: Store, publisher_url: str) -> tuple[str, int]:
    """An album whose one image stays `uploading`: its message met a store outage at every
    delivery, and the broker dead-lettered it at the delivery limit."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, (row,) = store.create_album(user.id, "t", None, [f"{user.prefix}0.png"])
    image_id = upload_of(row.body).image_id
    store.start_attempt(image_id, fence=row.headers["album-fence"])
    publisher = Publisher(publisher_url)
    try:
        publisher.publish_confirmed(
            [dead_letters.dead_letter(UPLOADS, row.body, row.headers, "delivery limit", None, 1)]
        )
    finally:
        publisher.close()
    return album_id, image_id


def test_a_dead_letter_of_an_image_stuck_uploading_sends_it_again(
    replayer: Replayer, sqlite_store: Store, amqp_url: str
) -> None:
    album_id, image_id = stuck_album(sqlite_store, amqp_url)
    assert replayer.retry_album(album_id) == 0  # nothing failed: the letter stays
    assert len(replayer.queue().browse()) == 1
    assert replayer.replay(lambda letter: letter.album_id == album_id) == Replayed(1, stale=0)
    # Removing the letter without a new message would leave the image uploading for ever.
    sent = [upload_of(body) for _, body in get_all(amqp_url, UPLOADS.name)]
    assert [m.image_id for m in sent] == [image_id]
    assert replayer.queue().browse() == []
    assert present(sqlite_store.album(album_id)).state == "publishing"
