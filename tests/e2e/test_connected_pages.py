"""Each user publishes to their own Facebook Page, every service as a process: two users
connect two Pages through Facebook Login (the simulator's dialog, over HTTP as a browser
follows it) and publish at the same time; then a Page's token is revoked mid-album, its images
pause, and reconnecting resumes them with every photo published once."""

from __future__ import annotations

import functools
import re
import threading
import uuid
import zlib
from typing import Any

import pytest
import requests
from sqlalchemy import select

from shared.store import Store
from shared.store.tables import Image
from tests.e2e.conftest import System
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def connect_page(system: System, token: str, fb_user: str) -> requests.Session:
    """Sign in to the pages and connect the Page of the simulator's Facebook user `fb_user`."""
    requests.put(
        f"{system.graph_url}/_sim/login", json={"user": fb_user}, timeout=5
    ).raise_for_status()
    browser = requests.Session()
    login = browser.get(f"{system.api_url}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf
    browser.post(
        f"{system.api_url}/login", data={"token": token, "csrf_token": csrf[1]}, timeout=10
    ).raise_for_status()
    # Our redirect to the dialog, the dialog's back to the callback, the callback's home.
    landed = browser.get(f"{system.api_url}/connect/facebook", timeout=10)
    assert landed.status_code == 200 and "Connected your Facebook Page" in landed.text
    return browser


def new_user_with_page(system: System, page_id: str) -> dict[str, Any]:
    fb_user = f"fb-{uuid.uuid4().hex[:6]}"
    requests.post(
        f"{system.graph_url}/_sim/pages", json={"id": page_id, "owner": fb_user}, timeout=5
    ).raise_for_status()
    user = system.create_user(f"{fb_user}@example.com")
    connect_page(system, user["token"], fb_user)
    page = requests.get(
        f"{system.api_url}/api/page",
        timeout=10,
        headers={"Authorization": f"Bearer {user['token']}"},
    ).json()["page"]
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


def test_two_users_with_two_pages_publish_at_once_each_album_on_its_owners_page(
    system: System,
) -> None:
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
def test_a_token_revoked_mid_album_pauses_and_reconnecting_resumes_each_photo_once(
    system: System,
) -> None:
    user = new_user_with_page(system, f"73{str(uuid.uuid4().int)[:9]}")
    # Four go out at once: with eight, the second four were on their way (past the token
    # check) when the first photo showed, and nothing was left to pause.
    keys = put_images(system, user["prefix"], 14)
    system.set_faults(latency_s=0.4)
    answer = system.publish(user["token"], title="Interrupted", images=keys)
    album_id = answer.json()["id"]
    wait_for(
        lambda: photos_of(system, user["token"], album_id),
        timeout=30,
        every=0.05,
        what="a first photo",
    )
    requests.post(
        f"{system.graph_url}/_sim/pages/{user['page_id']}/revoke", timeout=5
    ).raise_for_status()

    def paused() -> dict[str, Any] | None:
        album = system.album(user["token"], album_id)
        states = [i["state"] for i in album["images"]]
        # Queued: waiting for their turn behind the paused ones (docs/fair-turns.md).
        return (
            album
            if "paused" in states and set(states) <= {"uploaded", "paused", "queued"}
            else None
        )

    album = wait_for(paused, timeout=60, every=0.2, what="the album's images to pause")
    assert album["state"] == "publishing"
    assert all(i["attempts"] == 0 for i in album["images"] if i["state"] == "paused")
    page = requests.get(
        f"{system.api_url}/api/page",
        timeout=10,
        headers={"Authorization": f"Bearer {user['token']}"},
    ).json()["page"]
    assert page["state"] == "needs_reconnect"
    (mail,) = wait_for(
        lambda: [
            m
            for m in system.mails_to(user["email"])
            if m["subject"].startswith("Reconnect your Facebook Page")
        ],
        timeout=30,
        every=0.5,
        what="the email asking to reconnect",
    )
    assert "/connect/facebook" in mail["text"]

    browser = connect_page(system, user["token"], user["fb_user"])  # a new Page token
    assert browser is not None
    assert system.wait_settled(user["token"], album_id)["state"] == "done"
    photos = photos_of(system, user["token"], album_id)
    assert len(photos) == len({p["sha256"] for p in photos}) == 14  # each image once


# -- on the multi-photo post path (album creation refused: the simulator's default) ----------


def api_page(system: System, token: str) -> dict[str, Any]:
    return dict(
        requests.get(
            f"{system.api_url}/api/page", timeout=10, headers={"Authorization": f"Bearer {token}"}
        ).json()["page"]
    )


def page_posts(system: System, page_id: str) -> list[dict[str, Any]]:
    posts = requests.get(f"{system.graph_url}/_sim/posts", timeout=5).json()["posts"]
    return [post for post in posts if post["page"] == page_id]


def reconnect_mails(system: System, address: str) -> list[dict[str, Any]]:
    return [
        m
        for m in system.mails_to(address)
        if m["subject"].startswith("Reconnect your Facebook Page")
    ]


def settle_mails(system: System, address: str, album_id: str) -> list[dict[str, Any]]:
    return [m for m in system.mails_to(address) if f"/albums/{album_id}" in m["text"]]


def image_rows(system: System, album_id: str) -> list[tuple[str, bool | None]]:
    """(state, unreleased) of each of the album's images, read in the store: the API shows an
    image waiting for its album's turn (no message yet: docs/fair-turns.md) as `queued` too."""
    store = Store(system.env["DATABASE_URL"])
    try:
        with store.engine.connect() as connection:
            return [
                (state, unreleased)
                for state, unreleased in connection.execute(
                    select(Image.state, Image.unreleased).where(Image.album_id == album_id)
                )
            ]
    finally:
        store.dispose()


def all_released_and_sent(system: System, album_id: str) -> bool:
    """Every image of the album has had its turn and its message reached the broker."""
    store = Store(system.env["DATABASE_URL"])
    try:
        sent = store.unpublished_count() == 0
    finally:
        store.dispose()
    return sent and not any(unreleased for _, unreleased in image_rows(system, album_id))


def images_stopped(system: System, token: str, album_id: str) -> dict[str, Any] | None:
    """The album once none of its images is on its way: uploading, retrying, or queued with
    its message out (not waiting for the album's turn)."""
    if any(
        state in ("uploading", "retrying") or (state == "queued" and not unreleased)
        for state, unreleased in image_rows(system, album_id)
    ):
        return None
    return system.album(token, album_id)


def put_hashed(system: System, prefix: str, name: str, count: int) -> dict[str, str]:
    """`count` distinct PNGs under the user's prefix: key -> sha256 of its bytes."""
    from dev.images import png

    return {
        key: system.put(key, png(40, 30, seed=zlib.crc32(key.encode())))
        for key in (f"{prefix}{name}/{n}.png" for n in range(count))
    }


def assert_posted_once(
    system: System, user: dict[str, Any], album: dict[str, Any], hashes: dict[str, str]
) -> dict[str, Any]:
    """One post on the user's Page attaching each uploaded image's photo once, each photo
    carrying its image's bytes, and no mark of ours in anything Facebook shows."""
    uploaded = {i["photo_id"]: i["key"] for i in album["images"] if i["state"] == "uploaded"}
    posts = [
        p for p in page_posts(system, user["page_id"]) if set(p["attached_media"]) & set(uploaded)
    ]
    assert len(posts) == 1, posts
    (post,) = posts
    assert sorted(post["attached_media"]) == sorted(uploaded)
    photos = {p["id"]: p for p in system.photos() if p["page"] == user["page_id"]}
    assert {fbid: photos[fbid]["sha256"] for fbid in uploaded} == {
        fbid: hashes[key] for fbid, key in uploaded.items()
    }
    mine = [p for p in photos.values() if p["sha256"] in set(hashes.values())]
    assert len(mine) == len({p["sha256"] for p in mine})  # no image sent twice
    public = [post["message"], *(p.get("caption") or "" for p in mine)]
    assert not [text for text in public if "ref:" in text or album["id"] in text]
    assert album["destination"]["kind"] == "post"
    assert album["destination"]["post"]["state"] == "posted"
    assert album["destination"]["post"]["id"] == post["id"]
    return post


def test_on_the_post_path_a_revoked_token_pauses_and_reconnecting_posts_each_photo_once(
    system: System,
) -> None:
    user = new_user_with_page(system, f"74{str(uuid.uuid4().int)[:9]}")
    # Four go out at once: the revoke comes with the second four in flight, the rest waiting.
    hashes = put_hashed(system, user["prefix"], "revoked-post", 14)
    system.set_faults(latency_s=0.4)
    answer = system.publish(user["token"], title="Interrupted post", images=list(hashes))
    assert answer.status_code == 202, answer.text
    album_id = answer.json()["id"]
    wait_for(
        lambda: any(
            i["state"] == "uploaded" for i in system.album(user["token"], album_id)["images"]
        ),
        timeout=30,
        every=0.05,
        what="a first photo",
    )
    requests.post(
        f"{system.graph_url}/_sim/pages/{user['page_id']}/revoke", timeout=5
    ).raise_for_status()

    album = wait_for(
        lambda: images_stopped(system, user["token"], album_id),
        timeout=60,
        every=0.2,
        what="the album's images to stop moving",
    )
    states = [i["state"] for i in album["images"]]
    # Queued: waiting for their turn, behind the paused ones (which keep their places).
    assert "paused" in states and set(states) <= {"uploaded", "paused", "queued"}, states
    assert all(i["attempts"] == 0 for i in album["images"] if i["state"] != "uploaded")
    assert album["state"] == "publishing"
    assert album["destination"]["post"]["state"] not in ("posted", "failed")
    assert api_page(system, user["token"])["state"] == "needs_reconnect"
    (mail,) = wait_for(
        lambda: reconnect_mails(system, user["email"]),
        timeout=30,
        every=0.5,
        what="the email asking to reconnect",
    )
    assert "/connect/facebook" in mail["text"]
    assert page_posts(system, user["page_id"]) == []  # nothing posted while paused

    connect_page(system, user["token"], user["fb_user"])  # a new Page token
    album = system.wait_settled(user["token"], album_id)
    assert album["state"] == "done"
    assert {i["state"] for i in album["images"]} == {"uploaded"}
    assert_posted_once(system, user, album, hashes)
    assert (
        len(
            wait_for(
                lambda: settle_mails(system, user["email"], album_id),
                timeout=30,
                every=0.5,
                what="the settle email",
            )
        )
        == 1
    )
    assert len(reconnect_mails(system, user["email"])) == 1


def paused_post(system: System, token: str, album_id: str) -> dict[str, Any] | None:
    """The album's multi-photo post once it is paused (waiting for its Page), else None."""
    post: dict[str, Any] = system.album(token, album_id)["destination"]["post"]
    return post if post["state"] == "paused" else None


def test_on_the_post_path_a_policy_block_stops_the_album_pauses_the_next_and_reconnect_resumes(
    system: System,
) -> None:
    user = new_user_with_page(system, f"75{str(uuid.uuid4().int)[:9]}")
    other = new_user_with_page(system, f"76{str(uuid.uuid4().int)[:9]}")
    stopped_hashes = put_hashed(system, user["prefix"], "blocked-post", 8)
    next_hashes = put_hashed(system, user["prefix"], "after-block", 3)
    other_hashes = put_hashed(system, other["prefix"], "meanwhile", 4)
    system.set_faults(latency_s=1.0)
    # Albums take turns (ALBUM_WINDOW is 4 here, the uploader's concurrency): the first
    # album's first four go out; another user's four queue behind them, and the first
    # album's last four behind those, released as its first four end; the next album of the
    # blocked Page queues behind them. The block comes while the other user's four are on
    # their way, so the first album's last four meet it first: that album stops, and the
    # Page is marked blocked before a worker takes the next album's images.
    stopped_id = system.publish(user["token"], title="Blocked", images=list(stopped_hashes)).json()[
        "id"
    ]
    other_id = system.publish(other["token"], title="Elsewhere", images=list(other_hashes)).json()[
        "id"
    ]
    wait_for(
        lambda: all_released_and_sent(system, stopped_id),
        timeout=30,
        every=0.05,
        what="the first album's first four sent and its last four queued",
    )
    waiting_id = system.publish(
        user["token"], title="After the block", images=list(next_hashes)
    ).json()["id"]
    requests.post(
        f"{system.graph_url}/_sim/pages/{user['page_id']}/block", timeout=5
    ).raise_for_status()
    assert system.wait_settled(other["token"], other_id)["state"] == "done"  # another Page
    stopped = wait_for(
        lambda: images_stopped(system, user["token"], stopped_id),
        timeout=60,
        every=0.2,
        what="the blocked album's images to stop moving",
    )
    assert {i["state"] for i in stopped["images"]} == {"uploaded", "failed"}
    assert all("blocked" in i["error"] for i in stopped["images"] if i["state"] == "failed")
    # Its photos already sent wait for the Page too: their post pauses, not refused for good.
    post = wait_for(
        lambda: paused_post(system, user["token"], stopped_id),
        timeout=30,
        every=0.2,
        what="the blocked album's post to pause",
    )
    assert "reconnect" in post["error"]
    waiting = wait_for(
        lambda: images_stopped(system, user["token"], waiting_id),
        timeout=60,
        every=0.2,
        what="the next album's images to pause",
    )
    assert [(i["state"], i["attempts"]) for i in waiting["images"]] == [("paused", 0)] * 3
    assert waiting["state"] == "publishing"
    assert api_page(system, user["token"])["state"] == "blocked"
    refused = system.publish(user["token"], title="Meanwhile", images=list(next_hashes)[:1])
    assert refused.status_code == 409 and "reconnect" in refused.json()["error"]
    (mail,) = wait_for(
        lambda: reconnect_mails(system, user["email"]),
        timeout=30,
        every=0.5,
        what="the email asking to reconnect",
    )
    assert "blocked" in mail["text"] and "/connect/facebook" in mail["text"]

    requests.post(
        f"{system.graph_url}/_sim/pages/{user['page_id']}/unblock", timeout=5
    ).raise_for_status()
    connect_page(system, user["token"], user["fb_user"])
    resumed = system.wait_settled(user["token"], waiting_id)
    assert resumed["state"] == "done"
    assert_posted_once(system, user, resumed, next_hashes)
    # The stopped album's sent photos go out in its post once the Page is back (the reconnect
    # requests the paused post again), the failed ones never.
    stopped = system.wait_settled(user["token"], stopped_id, timeout=120)
    assert stopped["state"] == "done_with_failures"
    assert_posted_once(system, user, stopped, stopped_hashes)
    for album_id in (stopped_id, waiting_id):
        assert (
            len(
                wait_for(
                    functools.partial(settle_mails, system, user["email"], album_id),
                    timeout=30,
                    every=0.5,
                    what="the settle email",
                )
            )
            == 1
        )
    assert len(reconnect_mails(system, user["email"])) == 1
