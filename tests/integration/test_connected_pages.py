"""Connected Pages against the Graph simulator: Facebook Login (dialog, code, long-lived token,
/me/accounts), and two users with two Pages publishing at the same time through the real
handler, Graph client and store: each album lands on its owner's Page only."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

from dev.images import png
from services.api.facebook_login import FacebookLogin, LoginFailed, ManagedPage
from services.uploader.feed_poster import FeedPoster
from services.uploader.handler import ImageUploader, Policy
from services.uploader.pages import Pages
from shared.adapters.graph_client import GraphClient
from shared.broker.fake_publisher import FakePublisher
from shared.config.token_cipher import TokenCipher
from shared.contracts import messages, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, decide
from shared.store import Store
from tests.present import present

from .helpers import VERSION

pytestmark = pytest.mark.integration

BUCKET = "pages-test"
REDIRECT = "http://127.0.0.1:1/connect/facebook/callback"


def login(sim: str, user: str) -> list[ManagedPage]:
    """Connect as the simulator's Facebook `user`, as the API's callback does."""
    requests.put(f"{sim}/_sim/login", json={"user": user}, timeout=5).raise_for_status()
    fb = FacebookLogin(sim, sim, VERSION, "sim-app", "sim-app-secret")
    dialog = requests.get(fb.dialog(REDIRECT, "s1"), allow_redirects=False, timeout=5)
    assert dialog.status_code == 302
    query = parse_qs(urlsplit(dialog.headers["Location"]).query)
    assert query["state"] == ["s1"]
    return fb.pages_for_code(query["code"][0], REDIRECT)


def test_the_login_flow_lists_the_users_pages_with_their_tokens(sim: str) -> None:
    requests.post(
        f"{sim}/_sim/pages", json={"id": "5001", "name": "Cafe", "owner": "carol"}, timeout=5
    ).raise_for_status()
    (page,) = login(sim, "carol")
    assert (page.id, page.name) == ("5001", "Cafe") and page.token
    assert page.token not in repr(page)


def test_a_code_is_used_once_and_a_wrong_redirect_is_refused(sim: str) -> None:
    fb = FacebookLogin(sim, sim, VERSION, "sim-app", "sim-app-secret")
    dialog = requests.get(fb.dialog(REDIRECT, "s"), allow_redirects=False, timeout=5)
    code = parse_qs(urlsplit(dialog.headers["Location"]).query)["code"][0]
    with pytest.raises(LoginFailed, match="redirect_uri"):
        fb.pages_for_code(code, "http://elsewhere/cb")
    with pytest.raises(LoginFailed, match="used or is invalid"):
        fb.pages_for_code(code, REDIRECT)


def test_two_users_with_two_pages_publish_at_once_each_only_to_their_page(
    sim: str, sqlite_store: Store, s3_client: Any
) -> None:
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)
    cipher = TokenCipher(Fernet.generate_key().decode())
    albums = {}
    for owner, page_id in (("ann", "6001"), ("bob", "6002")):
        requests.post(
            f"{sim}/_sim/pages", json={"id": page_id, "owner": owner}, timeout=5
        ).raise_for_status()
        (page,) = login(sim, owner)
        user, _ = sqlite_store.create_user(f"{owner}-{uuid.uuid4().hex[:6]}@example.com")
        sqlite_store.connect_page(user.id, page.id, page.name, cipher.encrypt(page.token))
        keys = [f"{user.prefix}{n}.png" for n in range(4)]
        for n, key in enumerate(keys):
            s3_client.put_object(
                Bucket=BUCKET, Key=key, Body=png(32, 24, seed=n), ContentType="image/png"
            )
        albums[page_id] = sqlite_store.create_album(
            user.id, f"{owner}'s", None, keys, page_id=page.id
        )

    def client(page_id: str, token: str) -> GraphClient:
        return GraphClient(sim, VERSION, page_id, token, timeout=(5.0, 30.0))

    uploader = ImageUploader(
        sqlite_store,
        Outbox(
            sqlite_store,
            FakePublisher(),  # type: ignore[arg-type]
            grace=timedelta(0),
        ),
        None,
        s3_client,
        BUCKET,
        Policy((1, 3), 3),
        pages=Pages(sqlite_store, cipher, client),
    )
    deliveries = [Delivery(row.body, {}) for _, rows in albums.values() for row in rows]
    threads = [threading.Thread(target=decide, args=(uploader.route(), d)) for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for page_id, (album_id, _) in albums.items():
        assert present(sqlite_store.album(album_id)).state == "done"
        photos = requests.get(f"{sim}/_sim/photos", timeout=5).json()["photos"]
        fb_album = present(sqlite_store.album(album_id)).fb_album_id
        mine = [p for p in photos if p["album_id"] == fb_album]
        assert len(mine) == 4 and {p["page"] for p in mine} == {page_id}


def test_the_simulator_checks_each_pages_token_on_its_albums_and_photos(sim: str) -> None:
    import io

    from shared.adapters.graph_client import GraphError

    tokens = {}
    for page_id, owner in (("6101", "dora"), ("6102", "eve")):
        requests.post(
            f"{sim}/_sim/pages", json={"id": page_id, "owner": owner}, timeout=5
        ).raise_for_status()
        (page,) = login(sim, owner)
        tokens[page_id] = page.token
    dora = GraphClient(sim, VERSION, "6101", tokens["6101"], timeout=(5.0, 30.0))
    eve_album = GraphClient(sim, VERSION, "6102", tokens["6102"]).create_album("Eve's")
    body = png(8, 8, seed=1)
    with pytest.raises(GraphError) as refused:
        dora.upload_photo(eve_album, io.BytesIO(body), len(body), "a.png", "image/png", "x")
    assert refused.value.code == 200  # Page A's token on Page B's album
    requests.post(f"{sim}/_sim/pages/6101/block", timeout=5).raise_for_status()
    with pytest.raises(GraphError) as blocked:
        dora.create_album("Dora's")
    assert blocked.value.code == 368
    requests.post(f"{sim}/_sim/pages/6101/revoke", timeout=5).raise_for_status()
    with pytest.raises(GraphError) as revoked:
        list(dora.list_albums())
    assert (revoked.value.code, revoked.value.subcode) == (190, 460)
    (fresh,) = login(sim, "dora")  # logging in again hands out a new Page token
    assert fresh.token != tokens["6101"]


@pytest.mark.parametrize("stop", ["revoke", "block"])
def test_a_page_stop_on_the_post_pauses_it_and_the_reconnect_posts_it_once(
    sim: str, store: Store, s3_client: Any, stop: str
) -> None:
    """Issue 10 on the multi-photo post, on each backend: the Page's token revoked (190) or
    the Page blocked (368) after the photos went up; the post pauses and its owner is asked
    once; the reconnect requests it at once, and one post and one settle follow."""
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)
    cipher = TokenCipher(Fernet.generate_key().decode())
    requests.post(
        f"{sim}/_sim/pages", json={"id": "6301", "owner": "fay"}, timeout=5
    ).raise_for_status()
    (page,) = login(sim, "fay")
    user, _ = store.create_user(f"fay-{uuid.uuid4().hex[:6]}@example.com")
    store.connect_page(user.id, page.id, page.name, cipher.encrypt(page.token))
    keys = [f"{user.prefix}post-{n}.png" for n in range(3)]
    for n, key in enumerate(keys):
        s3_client.put_object(
            Bucket=BUCKET, Key=key, Body=png(32, 24, seed=n), ContentType="image/png"
        )
    album_id, rows = store.create_album(
        user.id, "Fay's", None, keys, page_id=page.id, destination=("post", None)
    )
    publisher = FakePublisher()
    outbox = Outbox(store, publisher, grace=timedelta(0))  # type: ignore[arg-type]
    pages = Pages(
        store,
        cipher,
        lambda page_id, token: GraphClient(sim, VERSION, page_id, token, timeout=(5.0, 30.0)),
    )
    uploader = ImageUploader(store, outbox, None, s3_client, BUCKET, Policy((1, 3), 3), pages=pages)
    poster = FeedPoster(store, outbox, pages.client_for, Policy((1, 3), 3))
    for row in rows:
        assert decide(uploader.route(), Delivery(row.body, {})).kind == "ack"
    requests.post(f"{sim}/_sim/pages/6301/{stop}", timeout=5).raise_for_status()

    def requests_sent() -> list[messages.FeedPostRequested]:
        return [
            m
            for m in (messages.decode(o.body) for o in publisher.to(topology.WORK_EXCHANGE))
            if isinstance(m, messages.FeedPostRequested)
        ]

    [request] = requests_sent()
    assert decide(poster.route(), Delivery(messages.encode(request), {})).kind == "ack"
    album = present(store.album(album_id))
    assert album.post_state == "paused" and album.state == "publishing"
    assert present(store.page(user.id)).state == (
        "needs_reconnect" if stop == "revoke" else "blocked"
    )
    assert [m.user_id for m in store.claim_reconnect_mails()] == [user.id]
    assert store.claim_reconnect_mails() == []

    if stop == "block":
        requests.post(f"{sim}/_sim/pages/6301/unblock", timeout=5).raise_for_status()
    (fresh,) = login(sim, "fay")
    outbox.send_rows(store.connect_page(user.id, fresh.id, fresh.name, cipher.encrypt(fresh.token)))
    again = requests_sent()[1:]
    assert [(m.album_id, m.settle_seq) for m in again] == [(album_id, request.settle_seq)]
    assert decide(poster.route(), Delivery(messages.encode(again[0]), {})).kind == "ack"
    assert decide(poster.route(), Delivery(messages.encode(request), {})).kind == "ack"
    [post] = requests.get(f"{sim}/_sim/posts", timeout=5).json()["posts"]
    album = present(store.album(album_id))
    assert album.post_state == "posted" and album.fb_post_id == post["id"]
    assert album.state == "done"
    settled = [
        m
        for m in (messages.decode(o.body) for o in publisher.to(topology.WORK_EXCHANGE))
        if isinstance(m, messages.AlbumSettled)
    ]
    assert len(settled) == 1 and len(settled[0].uploaded) == 3
