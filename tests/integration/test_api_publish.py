"""POST /api/albums on a real store and broker: an album the store committed is never answered
as a failure, and an Idempotency-Key makes a repeated POST return the same album unpublished
twice (one album per key even when two requests race)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from flask import Flask
from pydantic import SecretStr

from services.api.app import create_app
from services.api.services import Services
from services.api.settings import ApiSettings
from shared.contracts import messages
from shared.store import Store, UserView
from tests.integration.helpers import upload_of

from .helpers import get_all
from .store_blips import BlippingStore

pytestmark = pytest.mark.integration


@dataclass
class Api:
    app: Flask
    store: Store
    user: UserView
    token: str

    def post(self, body: dict[str, Any], key: str | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.app.test_client().post("/api/albums", json=body, headers=headers)

    def album_body(self, count: int = 3, title: str = "Summer") -> dict[str, Any]:
        return {"title": title, "images": [f"{self.user.prefix}{n}.png" for n in range(count)]}


@contextlib.contextmanager
def api_on(store: Any, amqp_url: str, **more: Any) -> Iterator[Api]:
    settings = ApiSettings(
        _env_file=None,
        amqp_url=amqp_url,  # type: ignore[call-arg]
        database_url="sqlite:///unused.db",
        s3_endpoint_url=None,
        # Signs session cookies: set, so that none is made under var/.
        api_secret_key=SecretStr("integration-session-key"),
        # A one-tenant install: albums go to this Page without a connection.
        facebook_page_id="1000000000000001",
        facebook_page_token=SecretStr("test-page-token"),
        **more,
    )
    app = create_app(settings, cast(Store, store))
    user, token = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    try:
        yield Api(app, cast(Store, store), user, token)
    finally:
        services: Services = app.extensions["services"]
        services.close()


@pytest.fixture()
def api(store: Store, amqp_url: str, work_queue: str) -> Iterator[Api]:
    with api_on(store, amqp_url) as api:
        yield api


def queued_albums(amqp_url: str, queue: str) -> list[str]:
    return [messages.decode(body).album_id for _, body in get_all(amqp_url, queue)]


def test_an_album_queues_only_its_window_of_images_and_shows_the_rest_queued(
    store: Store, amqp_url: str, work_queue: str
) -> None:
    with api_on(store, amqp_url, album_window=2) as api:
        response = api.post(api.album_body(5))
        assert response.status_code == 202, response.get_json()
        album_id = response.get_json()["id"]
        shown = api.app.test_client().get(
            f"/api/albums/{album_id}", headers={"Authorization": f"Bearer {api.token}"}
        )
    assert queued_albums(amqp_url, work_queue) == [album_id] * 2
    assert shown.get_json()["counts"] == {"queued": 5}


def test_closing_the_services_ends_the_publisher_and_its_relay(
    store: Store, amqp_url: str, work_queue: str
) -> None:
    """The API's publisher and outbox relay are built on first use; closing the services (the
    server does on SIGTERM, each test here after it) ends both, connection and threads."""
    before = set(threading.enumerate())
    with api_on(store, amqp_url) as api:
        assert api.post(api.album_body(1)).status_code == 202
        started = {thread.name for thread in set(threading.enumerate()) - before}
        assert {"publisher-io", "outbox-relay"} <= started
    assert [thread.name for thread in set(threading.enumerate()) - before] == []


# -- an error after the commit -------------------------------------------------------------------


def test_an_album_committed_and_queued_is_accepted_although_marking_it_published_failed(
    sqlite_store: Store, amqp_url: str, work_queue: str
) -> None:
    """The broker confirmed the album's messages, then the store failed to mark the outbox rows
    published: the album is committed and queued, so the answer is 202, not "nothing was
    accepted" (a client that believed that would publish the album twice)."""
    blipping = BlippingStore(sqlite_store, "mark_published")
    with api_on(blipping, amqp_url) as api:
        response = api.post(api.album_body(3))
    assert blipping.blips == 1
    assert response.status_code == 202, response.get_json()
    album_id = response.get_json()["id"]
    assert response.headers["Location"] == f"/api/albums/{album_id}"
    assert sqlite_store.album(album_id) is not None
    assert queued_albums(amqp_url, work_queue) == [album_id] * 3
    # The rows stay unmarked: the relay sends them again later and the uploader, idempotent,
    # acks the copies.
    assert sqlite_store.unpublished_count() == 3


def test_a_retry_committed_is_accepted_although_marking_it_published_failed(
    sqlite_store: Store, amqp_url: str, work_queue: str
) -> None:
    blipping = BlippingStore(sqlite_store, "mark_published")
    with api_on(blipping, amqp_url) as api:
        album_id, rows = sqlite_store.create_album(
            api.user.id, "t", None, [f"{api.user.prefix}a.png"]
        )
        image_id = upload_of(rows[0].body).image_id
        sqlite_store.start_attempt(image_id)
        sqlite_store.record_failed(image_id, "refused", 324)
        response = api.app.test_client().post(
            f"/api/albums/{album_id}/retry", headers={"Authorization": f"Bearer {api.token}"}
        )
    assert blipping.blips == 1
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"id": album_id, "reopened": 1}
    assert queued_albums(amqp_url, work_queue) == [album_id]


# -- Idempotency-Key -----------------------------------------------------------------------------


def test_the_same_key_and_body_return_the_same_album_published_once(
    api: Api, amqp_url: str, work_queue: str
) -> None:
    body = api.album_body(2)
    first = api.post(body, key="k-1")
    again = api.post(body, key="k-1")
    assert first.status_code == again.status_code == 202
    assert again.headers["Location"] == first.headers["Location"]
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert queued_albums(amqp_url, work_queue) == [first.get_json()["id"]] * 2
    assert len(api.store.albums(api.user.id)) == 1


def test_the_same_key_with_another_body_is_refused_with_a_reason(
    api: Api, amqp_url: str, work_queue: str
) -> None:
    first = api.post(api.album_body(2), key="k-2")
    other = api.post(api.album_body(2, title="Winter"), key="k-2")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.get_json()["error"]
    assert first.get_json()["id"] in other.get_json()["error"]
    assert len(api.store.albums(api.user.id)) == 1
    assert len(get_all(amqp_url, work_queue)) == 2


def test_keys_are_per_user(api: Api, amqp_url: str, work_queue: str) -> None:
    other, token = api.store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    mine = api.post(api.album_body(1), key="shared-key")
    theirs = api.post(
        {"title": "Summer", "images": [f"{other.prefix}0.png"]}, key="shared-key", token=token
    )
    assert mine.status_code == theirs.status_code == 202
    assert mine.get_json()["id"] != theirs.get_json()["id"]


@pytest.mark.parametrize("key", ["x" * 201, "tab\there", "", "caf\u00e9"])
def test_a_bad_key_is_refused_and_nothing_is_published(
    api: Api, amqp_url: str, work_queue: str, key: str
) -> None:
    response = api.app.test_client().post(
        "/api/albums",
        json=api.album_body(1),
        headers={
            "Authorization": f"Bearer {api.token}",
            "Idempotency-Key": key.encode().decode("latin-1"),
        },
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["error"]
    assert api.store.albums(api.user.id) == []
    assert get_all(amqp_url, work_queue) == []


def test_two_racing_posts_with_one_key_create_one_album(
    api: Api, amqp_url: str, work_queue: str
) -> None:
    body = api.album_body(4)
    start = threading.Barrier(4)
    answers: list[Any] = []

    def post() -> None:
        start.wait()
        answers.append(api.post(body, key="race"))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert len(api.store.albums(api.user.id)) == 1
    assert len(get_all(amqp_url, work_queue)) == 4


def test_captions_and_the_description_are_stored_with_the_album(api: Api) -> None:
    body = {
        "title": "Summer",
        "description": "By the sea",
        "images": [
            f"{api.user.prefix}a.png",
            {"key": f"{api.user.prefix}b.png", "caption": "Beach"},
        ],
    }
    answer = api.post(body)
    assert answer.status_code == 202, answer.get_json()
    album = api.store.album(answer.get_json()["id"])
    assert album is not None
    starts = [api.store.start_attempt(image.id) for image in album.images]
    assert [s.caption for s in starts] == ["", "Beach"]
    assert {s.album_description for s in starts} == {"By the sea"}


def test_a_caption_with_control_characters_is_refused_and_nothing_recorded(api: Api) -> None:
    body = {
        "title": "Summer",
        "images": [{"key": f"{api.user.prefix}a.png", "caption": "bell\x07"}],
    }
    answer = api.post(body)
    assert answer.status_code == 422
    assert "images.0.caption" in " ".join(answer.get_json()["details"])
    assert api.store.albums(api.user.id) == []
