"""A user publishes albums; every part runs as a process on real RabbitMQ."""

import hashlib
import time
import uuid
from typing import Any

import pytest
import requests

from dev.images import png
from shared.contracts import topology
from tests.e2e.conftest import System
from tests.integration.helpers import message_count, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture()
def user(system: System) -> dict[str, Any]:
    return system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")


def seed_images(
    system: System, user: dict[str, Any], count: int, folder: str = "trip"
) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for n in range(count):
        key = f"{user['prefix']}{folder}/photo-{n:02d}.png"
        hashes[key] = system.put(key, png(320, 240, seed=n + hash(folder) % 1000))
    return hashes


def settled_mail_quiet(
    system: System, e2e_amqp_url: str, address: str, count: int = 1
) -> list[dict[str, Any]]:
    """The emails to `address`, read once they arrived and the notifier's queue is empty."""
    wait_for(
        lambda: len(system.mails_to(address)) >= count,
        timeout=30,
        what=f"{count} email(s) to {address}",
    )
    wait_for(
        lambda: message_count(e2e_amqp_url, topology.ALBUM_SETTLED.name) == 0,
        what="the notifier's queue to drain",
    )
    return system.mails_to(address)


def test_a_twenty_image_album_reaches_facebook_and_one_email(
    system: System, user: dict[str, Any], e2e_amqp_url: str
) -> None:
    hashes = seed_images(system, user, 20)
    started = time.monotonic()
    response = system.publish(user["token"], title="Summer", images=list(hashes))
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(response.json()["id"])
    album = system.wait_settled(user["token"], response.json()["id"])
    elapsed = time.monotonic() - started

    assert album["state"] == "done", album
    assert {image["state"] for image in album["images"]} == {"uploaded"}
    photo_ids = {image["photo_id"] for image in album["images"]}
    mine = [p for p in system.photos() if p["id"] in photo_ids]
    assert len(mine) == 20 and len(photo_ids) == 20
    assert sorted(p["sha256"] for p in mine) == sorted(hashes.values())
    assert len({p["album_id"] for p in mine}) == 1

    mails = settled_mail_quiet(system, e2e_amqp_url, user["email"])
    assert len(mails) == 1
    assert mails[0]["subject"] == "Your album 'Summer' is on Facebook: all 20 photos"
    for key in hashes:
        assert key.rsplit("/", 1)[1] in mails[0]["text"]
    print(f"\n20-image album: settled in {elapsed:.2f} s, {len(mine)} photos, {len(mails)} email")


def test_refused_images_fail_alone_and_the_email_names_them(
    system: System, user: dict[str, Any], e2e_amqp_url: str
) -> None:
    hashes = seed_images(system, user, 18, folder="mixed")
    # Named and typed as PNGs, so they pass our own check of Facebook's limits: Facebook
    # itself refuses their bytes (code 324).
    refused = [f"{user['prefix']}mixed/broken-{n}.png" for n in range(2)]
    for key in refused:
        system.put(key, b"not an image at all", content_type="image/png")
    response = system.publish(user["token"], title="Mixed", images=list(hashes) + refused)
    assert response.status_code == 202
    album = system.wait_settled(user["token"], response.json()["id"])

    assert album["state"] == "done_with_failures"
    failed = {i["key"]: i for i in album["images"] if i["state"] == "failed"}
    assert set(failed) == set(refused)
    assert all("324" in i["error"] and i["attempts"] == 1 for i in failed.values())
    assert sum(i["state"] == "uploaded" for i in album["images"]) == 18

    (mail,) = settled_mail_quiet(system, e2e_amqp_url, user["email"])
    assert mail["subject"] == "Your album 'Mixed' is on Facebook: 18 of 20 photos"
    for key in refused:
        name = key.rsplit("/", 1)[1]
        assert name in mail["text"] and name in mail["html"]
    assert failed[refused[0]]["error"] in mail["text"]


def test_a_missing_object_fails_that_image_alone(system: System, user: dict[str, Any]) -> None:
    hashes = seed_images(system, user, 2, folder="gone")
    missing = f"{user['prefix']}gone/never-uploaded.png"
    # Mail goes only to the user's own address (issue 11): another one is refused unpublished.
    stranger = system.publish(
        user["token"], title="Gone", images=[*hashes, missing], notify_email="friend@example.com"
    )
    assert stranger.status_code == 422 and "your own address" in stranger.json()["error"]
    response = system.publish(
        user["token"], title="Gone", images=[*hashes, missing], notify_email=user["email"]
    )
    album = system.wait_settled(user["token"], response.json()["id"])
    states = {i["key"]: (i["state"], i["error"]) for i in album["images"]}
    assert states[missing] == ("failed", "not found in the bucket")
    assert all(states[key][0] == "uploaded" for key in hashes)
    wait_for(lambda: system.mails_to(user["email"]), what="the email to notify_email")


@pytest.mark.slow  # some 40 s of retry delays
def test_transient_facebook_errors_are_retried_until_the_album_is_done(
    system: System, user: dict[str, Any]
) -> None:
    hashes = seed_images(system, user, 10, folder="flaky")
    # 30% of uploads fail; six attempts make a give-up a 1-in-1,400 event per image.
    system.set_faults(error_rates={"503": 0.2, "2": 0.1}, seed=7)
    response = system.publish(user["token"], title="Flaky", images=list(hashes))
    album = system.wait_settled(user["token"], response.json()["id"], timeout=120)
    assert album["state"] == "done", album
    assert max(i["attempts"] for i in album["images"]) > 1
    photo_ids = {i["photo_id"] for i in album["images"]}
    mine = [p for p in system.photos() if p["id"] in photo_ids]
    assert sorted(p["sha256"] for p in mine) == sorted(hashes.values())


def test_bad_requests_get_a_reason_and_publish_nothing(
    system: System, user: dict[str, Any], e2e_amqp_url: str
) -> None:
    before = message_count(e2e_amqp_url, topology.IMAGE_UPLOADS.name)
    cases = [
        ({"title": "x", "images": ["users/999999/a.png"]}, 422, "not under your prefix"),
        ({"title": "x", "images": []}, 422, "invalid album"),
        (
            {"title": "x", "images": [user["prefix"] + "a.png"], "notify_email": "nope"},
            422,
            "invalid album",
        ),
    ]
    for body, status, reason in cases:
        response = system.publish(user["token"], body)
        assert response.status_code == status and reason in response.json()["error"]
    assert system.publish("wrong-token", title="x", images=["a"]).status_code == 401
    assert message_count(e2e_amqp_url, topology.IMAGE_UPLOADS.name) == before


def test_another_users_album_is_not_found(system: System, user: dict[str, Any]) -> None:
    other = system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    hashes = seed_images(system, user, 1, folder="private")
    album_id = system.publish(user["token"], title="Mine", images=list(hashes)).json()["id"]
    response = requests.get(
        f"{system.api_url}/api/albums/{album_id}",
        timeout=5,
        headers={"Authorization": f"Bearer {other['token']}"},
    )
    assert response.status_code == 404


def test_the_photos_on_facebook_are_the_objects_in_s3(system: System, user: dict[str, Any]) -> None:
    body = png(64, 64, seed=4242)
    key = f"{user['prefix']}exact/one.png"
    system.put(key, body)
    album_id = system.publish(user["token"], title="Exact", images=[key]).json()["id"]
    album = system.wait_settled(user["token"], album_id)
    (photo,) = [p for p in system.photos() if p["id"] == album["images"][0]["photo_id"]]
    assert photo["sha256"] == hashlib.sha256(body).hexdigest() and photo["size"] == len(body)


def test_the_caller_lists_their_images_and_albums_newest_first(
    system: System, user: dict[str, Any]
) -> None:
    hashes = seed_images(system, user, 3, folder="listing")
    headers = {"Authorization": f"Bearer {user['token']}"}
    images = requests.get(f"{system.api_url}/api/images", headers=headers, timeout=5).json()
    assert images["prefix"] == user["prefix"]
    assert sorted(i["key"] for i in images["images"]) == sorted(hashes)
    first = system.publish(user["token"], title="First", images=list(hashes)[:1]).json()["id"]
    second = system.publish(user["token"], title="Second", images=list(hashes)[1:]).json()["id"]
    albums = requests.get(f"{system.api_url}/api/albums", headers=headers, timeout=5).json()
    assert [a["id"] for a in albums["albums"]] == [second, first]
    spec = requests.get(f"{system.api_url}/api/openapi.json", timeout=5).json()
    assert "/api/albums/{album_id}" in spec["paths"]
