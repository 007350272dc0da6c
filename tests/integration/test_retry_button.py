"""The retry of an album's failed images, through `POST /api/albums/<id>/retry` and the album
page's *Retry failed images* button, on a real broker and store with 5,000 other albums' dead
letters queued: neither reads the dead-letter queue, so its work is its album's, not the queue's.

Every broker operation that names a queue is counted where pika sends it (`pika.channel.Channel`,
under both the blocking and the asynchronous adapters), on every thread."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pika.channel
import pytest
from flask.testing import FlaskClient

from shared.broker.publisher import Publisher
from shared.contracts import dead_letters, messages, topology
from shared.store import Store
from tests.integration.helpers import upload_of

from .helpers import get_all, message_count, purge
from .test_api_publish import Api, api_on

pytestmark = pytest.mark.integration

UPLOADS = topology.IMAGE_UPLOADS
DLQ = topology.dead_letter_queue_name(UPLOADS)
OTHER_LETTERS = 5000
#: The pika calls that read, take from or look at a queue, and where each names it.
QUEUE_CALLS = ("basic_get", "basic_consume", "queue_declare", "queue_purge")


class QueueCalls:
    """Counts the broker operations that name each queue while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        for name in QUEUE_CALLS:
            monkeypatch.setattr(pika.channel.Channel, name, self._counting(name))

    def _counting(self, name: str) -> Any:
        real = getattr(pika.channel.Channel, name)

        def call(channel: Any, *args: Any, **kwargs: Any) -> Any:
            queue = kwargs.get("queue", args[0] if args else "")
            self.calls.append((name, str(queue)))
            return real(channel, *args, **kwargs)

        return call

    def on(self, queue: str) -> list[str]:
        return [name for name, named in self.calls if named == queue]


@pytest.fixture(scope="module")
def crowded_dead_letters(amqp_url: str) -> Iterator[None]:
    """5,000 dead letters of other albums, as a busy install keeps until an operator purges."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), (1,))
    for queue in (UPLOADS.name, DLQ):
        connection.channel().queue_purge(queue)
    connection.close()
    publisher = Publisher(amqp_url)
    try:
        publisher.publish_confirmed(
            [_letter(uuid.uuid4().hex, n + 1, n) for n in range(OTHER_LETTERS)], timeout=120
        )
    finally:
        publisher.close()
    yield
    purge(amqp_url, UPLOADS.name, DLQ)


@pytest.fixture()
def api(sqlite_store: Store, amqp_url: str, crowded_dead_letters: None) -> Iterator[Api]:
    with api_on(sqlite_store, amqp_url) as api:
        yield api
    purge(amqp_url, UPLOADS.name)


def _letter(album_id: str, image_id: int, n: int) -> Any:
    body = messages.encode(
        messages.ImageUploadRequested(album_id=album_id, image_id=image_id, key=f"other/{n}.png")
    )
    return dead_letters.dead_letter(UPLOADS, body, {}, "refused", 324, 1)


def failed_album(api: Api, amqp_url: str, count: int) -> str:
    """An album of `count` images that all failed for good, their dead letters queued."""
    album_id, rows = api.store.create_album(
        api.user.id, "t", None, [f"{api.user.prefix}{n}.png" for n in range(count)]
    )
    publisher = Publisher(amqp_url)
    try:
        for row in rows:
            image_id = upload_of(row.body).image_id
            api.store.start_attempt(image_id)
            letter = dead_letters.dead_letter(UPLOADS, row.body, {}, "refused", 324, 1)
            for out in api.store.record_failed(image_id, "refused", 324, letter):
                if out.exchange == topology.DEAD_EXCHANGE:
                    publisher.publish_confirmed([out.outgoing()])
    finally:
        publisher.close()
    return album_id


def uploaded_album(api: Api) -> str:
    """An album whose one image is on Facebook: nothing to retry."""
    album_id, (row,) = api.store.create_album(api.user.id, "t", None, [f"{api.user.prefix}0.png"])
    image_id = upload_of(row.body).image_id
    api.store.start_attempt(image_id)
    api.store.record_uploaded(image_id, "photo-1")
    return album_id


def signed_in(api: Api) -> FlaskClient:
    client = api.app.test_client()
    login = client.get("/login").get_data(as_text=True)
    assert (
        client.post("/login", data={"token": api.token, "csrf_token": _csrf(login)}).status_code
        == 303
    )
    return client


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _retry_by_api(api: Api, album_id: str) -> Any:
    return api.app.test_client().post(
        f"/api/albums/{album_id}/retry", headers={"Authorization": f"Bearer {api.token}"}
    )


def _retry_by_button(api: Api, album_id: str) -> Any:
    client = signed_in(api)
    token = _csrf(client.get(f"/albums/{album_id}").get_data(as_text=True))
    return client.post(
        f"/albums/{album_id}/retry",
        data={"csrf_token": token},
        headers={"Accept": "application/json"},
    )


RETRIES = {"api": _retry_by_api, "button": _retry_by_button}


@pytest.mark.parametrize("retry", sorted(RETRIES))
def test_a_retry_with_nothing_to_retry_does_not_touch_the_dead_letters(
    retry: str, api: Api, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    album_id = uploaded_album(api)
    letters = message_count(amqp_url, DLQ)
    assert letters >= OTHER_LETTERS
    calls = QueueCalls(monkeypatch)

    response = RETRIES[retry](api, album_id)
    monkeypatch.undo()
    assert response.status_code == 409, response.get_json()
    assert calls.on(DLQ) == [], f"the retry did {len(calls.on(DLQ))} operations on {DLQ}"
    assert [name for name, _ in calls.calls if name in ("basic_get", "basic_consume")] == []
    assert message_count(amqp_url, DLQ) == letters


@pytest.mark.parametrize("retry", sorted(RETRIES))
@pytest.mark.slow
def test_a_retry_of_two_failed_images_queues_them_without_reading_the_dead_letters(
    retry: str, api: Api, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters = message_count(amqp_url, DLQ)
    album_id = failed_album(api, amqp_url, count=2)
    assert message_count(amqp_url, DLQ) == letters + 2 >= OTHER_LETTERS + 2
    calls = QueueCalls(monkeypatch)

    response = RETRIES[retry](api, album_id)
    monkeypatch.undo()
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["reopened"] == 2
    assert calls.on(DLQ) == [], f"the retry did {len(calls.on(DLQ))} operations on {DLQ}"
    assert [name for name, _ in calls.calls if name in ("basic_get", "basic_consume")] == []
    album = api.store.album(album_id)
    assert album is not None and album.state == "publishing"
    assert {image.state for image in album.images} == {"queued"}
    sent = [upload_of(body) for _, body in get_all(amqp_url, UPLOADS.name)]
    assert sorted(m.image_id for m in sent) == sorted(image.id for image in album.images)
    # The album's two letters stay (stale from now on: the CLI lists and purges them).
    assert message_count(amqp_url, DLQ) == letters + 2
