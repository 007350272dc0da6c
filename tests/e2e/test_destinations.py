"""Where an album goes, end to end (issue 10, item 2): every part a process, on real RabbitMQ
and the Graph simulator. With album creation refused (the simulator's default, as today's
Facebook), 20 images become one multi-photo post and one email with its link; allowed, one
album; an existing album picked, its 20 photos in it."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from dev.images import png
from shared.contracts import topology
from shared.contracts.destinations import post_url
from tests.e2e.conftest import System
from tests.integration.helpers import message_count, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture()
def user(system: System) -> dict[str, Any]:
    return system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")


@pytest.fixture()
def page(system: System) -> Iterator[Callable[..., None]]:
    """The simulated Page's settings, put back to refusing album creation after the test."""

    def set_page(**settings: Any) -> None:
        requests.put(f"{system.graph_url}/_sim/page", json=settings, timeout=5).raise_for_status()

    yield set_page
    set_page(refuse_album_creation=True)


def seed(system: System, user: dict[str, Any], count: int, folder: str) -> list[str]:
    keys: list[str] = []
    for n in range(count):
        key = f"{user['prefix']}{folder}/photo-{n:02d}.png"
        system.put(key, png(64, 48, seed=n + 7 * len(folder)))
        keys.append(key)
    return keys


def posts(system: System) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = requests.get(f"{system.graph_url}/_sim/posts", timeout=5).json()[
        "posts"
    ]
    return listed


def one_mail(system: System, e2e_amqp_url: str, address: str) -> list[dict[str, Any]]:
    wait_for(lambda: len(system.mails_to(address)) >= 1, timeout=60, what=f"a mail to {address}")
    wait_for(
        lambda: message_count(e2e_amqp_url, topology.ALBUM_SETTLED.name) == 0,
        what="the notifier's queue to drain",
    )
    return system.mails_to(address)


def test_refused_album_creation_gives_one_post_of_twenty_and_one_email(
    system: System, user: dict[str, Any], e2e_amqp_url: str
) -> None:
    keys = seed(system, user, 20, "refused")
    response = system.publish(user["token"], title="Harbour", images=keys)
    assert response.status_code == 202, response.text
    album = system.wait_settled(user["token"], response.json()["id"])

    assert [image["error"] for image in album["images"]] == [None] * 20
    assert album["state"] == "done", album
    destination = album["destination"]
    assert destination["kind"] == "post"
    assert "refused to create an album" in destination["note"]
    assert destination["post"]["state"] == "posted"
    photo_ids = [image["photo_id"] for image in album["images"]]
    [post] = [p for p in posts(system) if set(p["attached_media"]) & set(photo_ids)]
    assert post["attached_media"] == photo_ids and len(set(photo_ids)) == 20
    assert post["message"] == "Harbour" and destination["post"]["id"] == post["id"]
    mine = [p for p in system.photos() if p["id"] in photo_ids]
    assert len(mine) == 20 and not any(p["published"] for p in mine)  # none sent twice

    [mail] = one_mail(system, e2e_amqp_url, user["email"])
    assert post_url(post["id"]) in mail["text"]
    assert destination["post"]["url"] == post_url(post["id"])


def test_allowed_album_creation_gives_one_album_of_twenty(
    system: System, user: dict[str, Any], page: Callable[..., None], e2e_amqp_url: str
) -> None:
    page(refuse_album_creation=False)
    keys = seed(system, user, 20, "allowed")
    album = system.wait_settled(
        user["token"], system.publish(user["token"], title="Allowed", images=keys).json()["id"]
    )

    assert album["state"] == "done" and album["destination"]["kind"] == "new_album"
    photo_ids = {image["photo_id"] for image in album["images"]}
    mine = [p for p in system.photos() if p["id"] in photo_ids]
    assert len(mine) == 20 and {p["album_id"] for p in mine} == {album["destination"]["album_id"]}
    assert all(p["published"] for p in mine)
    assert not [p for p in posts(system) if set(p["attached_media"]) & photo_ids]
    assert len(one_mail(system, e2e_amqp_url, user["email"])) == 1


def test_an_existing_album_picked_gets_the_twenty_photos(
    system: System, user: dict[str, Any], e2e_amqp_url: str
) -> None:
    existing = requests.post(
        f"{system.graph_url}/_sim/albums", json={"name": "By hand"}, timeout=5
    ).json()["id"]
    listed = requests.get(
        f"{system.api_url}/api/page/albums",
        timeout=10,
        headers={"Authorization": f"Bearer {user['token']}"},
    ).json()
    assert {"id": existing, "name": "By hand"} in listed["albums"]
    keys = seed(system, user, 20, "existing")
    album = system.wait_settled(
        user["token"],
        system.publish(
            user["token"],
            title="Into it",
            images=keys,
            destination={"kind": "album", "id": existing},
        ).json()["id"],
    )

    assert album["destination"] == {"kind": "album", "album_id": existing, "note": None}
    photos = requests.get(
        f"{system.graph_url}/_sim/photos", params={"album_id": existing}, timeout=5
    ).json()["photos"]
    assert len(photos) == 20
    assert len(one_mail(system, e2e_amqp_url, user["email"])) == 1


def test_an_album_that_is_not_the_pages_is_refused_and_nothing_published(
    system: System, user: dict[str, Any]
) -> None:
    keys = seed(system, user, 1, "unknown")
    response = system.publish(
        user["token"], title="Nowhere", images=keys, destination={"kind": "album", "id": "999"}
    )
    assert response.status_code == 422 and "not an album of your Page" in response.text
    bad = system.publish(user["token"], title="Bad", images=keys, destination={"kind": "wall"})
    assert bad.status_code == 422
