"""Each user publishes to their own Facebook Page, every service as a process: two users
connect two Pages through Facebook Login (the simulator's dialog, over HTTP as a browser
follows it) and publish at the same time; then a Page's token is revoked mid-album, its images
pause, and reconnecting resumes them with every photo published once."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.conftest import System
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.e2e


def connect_page(system: System, token: str, fb_user: str) -> requests.Session:
    """Sign in to the pages and connect the Page of the simulator's Facebook user `fb_user`."""
    requests.put(f"{system.graph_url}/_sim/login", json={"user": fb_user},
                 timeout=5).raise_for_status()
    browser = requests.Session()
    login = browser.get(f"{system.api_url}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf
    browser.post(f"{system.api_url}/login", data={"token": token, "csrf_token": csrf[1]},
                 timeout=10).raise_for_status()
    # Our redirect to the dialog, the dialog's back to the callback, the callback's home.
    landed = browser.get(f"{system.api_url}/connect/facebook", timeout=10)
    assert landed.status_code == 200 and "Connected your Facebook Page" in landed.text
    return browser


def new_user_with_page(system: System, page_id: str) -> dict[str, Any]:
    fb_user = f"fb-{uuid.uuid4().hex[:6]}"
    requests.post(f"{system.graph_url}/_sim/pages", json={"id": page_id, "owner": fb_user},
                  timeout=5).raise_for_status()
    user = system.create_user(f"{fb_user}@example.com")
    connect_page(system, user["token"], fb_user)
    page = requests.get(f"{system.api_url}/api/page", timeout=10,
                        headers={"Authorization": f"Bearer {user['token']}"}).json()["page"]
    assert (page["id"], page["state"]) == (page_id, "connected")
    return {**user, "fb_user": fb_user, "page_id": page_id}


def photos_of(system: System, token: str, album_id: str) -> list[dict[str, Any]]:
    """Every photo in the Facebook album(s) the album's recorded photos are in: a duplicate
    would be there too (captions carry no mark of ours to find them by)."""
    recorded = {i["photo_id"] for i in system.album(token, album_id)["images"] if i["photo_id"]}
    photos = system.photos()
    fb_albums = {p["album_id"] for p in photos if p["id"] in recorded}
    return [p for p in photos if p["album_id"] in fb_albums]


def put_images(system: System, prefix: str, count: int) -> list[str]:
    from dev.images import png

    keys = [f"{prefix}pages/{n}.png" for n in range(count)]
    for n, key in enumerate(keys):
        system.put(key, png(40, 30, seed=n))
    return keys


def test_two_users_with_two_pages_publish_at_once_each_album_on_its_owners_page(system):
    suffix = str(uuid.uuid4().int)[:9]
    users = [new_user_with_page(system, f"71{suffix}"), new_user_with_page(system, f"72{suffix}")]
    system.set_faults(latency_s=0.2)  # so the two albums' uploads overlap
    answers: dict[str, Any] = {}

    def publish(user: dict[str, Any]) -> None:
        keys = put_images(system, user["prefix"], 5)
        answers[user["page_id"]] = system.publish(user["token"], title="Mine", images=keys)

    threads = [threading.Thread(target=publish, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for user in users:
        answer = answers[user["page_id"]]
        assert answer.status_code == 202, answer.text
        album_id = answer.json()["id"]
        assert system.wait_settled(user["token"], album_id)["state"] == "done"
        photos = photos_of(system, user["token"], album_id)
        assert len(photos) == 5 and {p["page"] for p in photos} == {user["page_id"]}


@pytest.mark.usefixtures("album_creation_allowed")  # photos counted in the album they went to
def test_a_token_revoked_mid_album_pauses_and_reconnecting_resumes_each_photo_once(system):
    user = new_user_with_page(system, f"73{str(uuid.uuid4().int)[:9]}")
    keys = put_images(system, user["prefix"], 8)
    system.set_faults(latency_s=0.4)
    answer = system.publish(user["token"], title="Interrupted", images=keys)
    album_id = answer.json()["id"]
    wait_for(lambda: photos_of(system, user["token"], album_id), timeout=30, every=0.05,
             what="a first photo")
    requests.post(f"{system.graph_url}/_sim/pages/{user['page_id']}/revoke",
                  timeout=5).raise_for_status()

    def paused() -> dict[str, Any] | None:
        album = system.album(user["token"], album_id)
        states = [i["state"] for i in album["images"]]
        return album if "paused" in states and set(states) <= {"uploaded", "paused"} else None

    album = wait_for(paused, timeout=60, every=0.2, what="the album's images to pause")
    assert album["state"] == "publishing"
    assert all(i["attempts"] == 0 for i in album["images"] if i["state"] == "paused")
    page = requests.get(f"{system.api_url}/api/page", timeout=10,
                        headers={"Authorization": f"Bearer {user['token']}"}).json()["page"]
    assert page["state"] == "needs_reconnect"
    (mail,) = wait_for(lambda: [m for m in system.mails_to(user["email"])
                                if m["subject"].startswith("Reconnect your Facebook Page")],
                       timeout=30, every=0.5, what="the email asking to reconnect")
    assert "/connect/facebook" in mail["text"]

    browser = connect_page(system, user["token"], user["fb_user"])  # a new Page token
    assert browser is not None
    assert system.wait_settled(user["token"], album_id)["state"] == "done"
    photos = photos_of(system, user["token"], album_id)
    assert len(photos) == len({p["sha256"] for p in photos}) == 8  # each image once
