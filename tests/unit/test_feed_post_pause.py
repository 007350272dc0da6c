"""A Page-wide stop met by the multi-photo post (issue 10): a 190 (token refused) or a 368
(Page blocked) answered to the post, or a Page found waiting for its owner, pauses the post,
not fails it; the owner is asked once to reconnect; the reconnect requests the post again at
once, and it goes out once. The real store on SQLite, a Graph in memory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.uploader.fake_graph import FakeGraph, Fault
from services.uploader.feed_poster import FeedPoster
from services.uploader.handler import Policy
from services.uploader.pages import PageClient, PagePaused
from shared.adapters.graph_client import GraphError
from shared.broker.fake_publisher import FakePublisher
from shared.contracts import messages, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, Fate, decide
from tests.unit.stores import new_store

PAGE = "7001"
REVOKED = GraphError("Error validating access token", http_status=400, code=190)
BLOCKED = GraphError("The page is blocked", http_status=400, code=368)


class World:
    """One user, a connected Page, and an album of three photos uploaded, its post asked for."""

    def __init__(self) -> None:
        self.store = new_store()
        self.publisher = FakePublisher()
        self.outbox = Outbox(
            self.store,
            self.publisher,  # type: ignore[arg-type]
            grace=timedelta(0),
        )
        self.graph = FakeGraph()
        self.sealed = b"token-1"
        self.paused_page: str | None = None
        self.poster = FeedPoster(self.store, self.outbox, self._page, Policy((5, 30), 3))
        self.user, _ = self.store.create_user("owner@example.com")
        self.store.connect_page(self.user.id, PAGE, "Cafe", self.sealed)
        keys = [f"{self.user.prefix}{n}.png" for n in range(3)]
        self.album_id, _ = self.store.create_album(
            self.user.id,
            "Trip",
            "owner@example.com",
            keys,
            page_id=PAGE,
            destination=("post", None),
        )
        album = self.store.album(self.album_id)
        assert album is not None
        for n, image in enumerate(album.images):
            self.store.start_attempt(image.id)
            self.outbox.send_rows(self.store.record_uploaded(image.id, f"photo-{n}"))

    def _page(self, album_id: str) -> PageClient:
        if self.paused_page is not None:
            raise PagePaused(self.paused_page)
        return PageClient(PAGE, self.graph, self.sealed)

    def sent(self, kind: type[Any]) -> list[Any]:
        return [
            m
            for m in (messages.decode(o.body) for o in self.publisher.to(topology.WORK_EXCHANGE))
            if isinstance(m, kind)
        ]

    def post(self, request: messages.FeedPostRequested) -> Fate:
        return decide(self.poster.route(), Delivery(messages.encode(request), {}))

    def reconnect(self, sealed: bytes) -> None:
        self.sealed, self.paused_page = sealed, None
        self.outbox.send_rows(self.store.connect_page(self.user.id, PAGE, "Cafe", sealed))


@pytest.fixture
def world() -> World:
    return World()


def test_a_190_on_the_post_pauses_it_and_asks_the_owner_once(world: World) -> None:
    world.graph.plan("create_post", Fault(REVOKED))
    [request] = world.sent(messages.FeedPostRequested)

    assert world.post(request).kind == "ack"

    album = world.store.album(world.album_id)
    assert album is not None and album.post_state == "paused", album
    assert album.post_error and "reconnect" in album.post_error
    assert album.state == "publishing" and world.sent(messages.AlbumSettled) == []
    page = world.store.page(world.user.id)
    assert page is not None and page.state == "needs_reconnect"
    assert len(world.store.claim_reconnect_mails()) == 1
    assert world.store.claim_reconnect_mails() == []
    assert world.post(request).kind == "ack" and world.graph.posts == []  # a duplicate


def test_the_reconnect_requests_the_paused_post_at_once_and_it_goes_out_once(world: World) -> None:
    world.graph.plan("create_post", Fault(REVOKED))
    [request] = world.sent(messages.FeedPostRequested)
    world.post(request)

    world.reconnect(b"token-2")

    again = world.sent(messages.FeedPostRequested)
    assert [(r.album_id, r.settle_seq) for r in again] == [(world.album_id, 1)] * 2
    assert world.post(again[-1]).kind == "ack"
    assert world.post(request).kind == "ack"  # the old copy, redelivered: acked, not posted
    [post] = world.graph.posts
    assert post["media"] == ["photo-0", "photo-1", "photo-2"]
    [settled] = world.sent(messages.AlbumSettled)
    assert len(settled.uploaded) == 3
    album = world.store.album(world.album_id)
    assert album is not None and album.post_state == "posted" and album.post_error is None


def test_a_368_on_the_post_blocks_the_page_and_pauses_the_post(world: World) -> None:
    world.graph.plan("create_post", Fault(BLOCKED))
    [request] = world.sent(messages.FeedPostRequested)

    assert world.post(request).kind == "ack"

    album = world.store.album(world.album_id)
    assert album is not None and album.post_state == "paused"
    page = world.store.page(world.user.id)
    assert page is not None and page.state == "blocked"
    assert len(world.store.claim_reconnect_mails()) == 1
    world.reconnect(b"token-2")
    assert world.post(world.sent(messages.FeedPostRequested)[-1]).kind == "ack"
    assert len(world.graph.posts) == 1 and len(world.sent(messages.AlbumSettled)) == 1


def test_a_post_that_finds_its_page_waiting_pauses_instead_of_waiting_a_minute(
    world: World,
) -> None:
    world.store.set_page_state(world.user.id, PAGE, "needs_reconnect")  # a photo's 190
    world.paused_page = "waiting for you to reconnect your Facebook Page"
    [request] = world.sent(messages.FeedPostRequested)

    fate = world.post(request)

    assert fate.kind == "ack", fate
    album = world.store.album(world.album_id)
    assert album is not None and album.post_state == "paused"
    world.reconnect(b"token-2")
    assert world.post(world.sent(messages.FeedPostRequested)[-1]).kind == "ack"
    assert len(world.graph.posts) == 1


def test_a_190_for_a_token_replaced_meanwhile_goes_again_not_paused(world: World) -> None:
    [request] = world.sent(messages.FeedPostRequested)
    world.store.connect_page(world.user.id, PAGE, "Cafe", b"token-2")  # while it was on its way
    world.graph.plan("create_post", Fault(REVOKED))

    fate = world.post(request)

    assert fate.kind != "ack" and fate.kind != "dead_letter", fate
    album = world.store.album(world.album_id)
    assert album is not None and album.post_state == "pending"
    page = world.store.page(world.user.id)
    assert page is not None and page.state == "connected"


def test_the_album_page_says_the_post_is_paused_and_why() -> None:
    from services.api.album_model import where_text

    text = where_text(
        {
            "kind": "post",
            "note": None,
            "post": {"state": "paused", "error": "waiting for you to reconnect your Facebook Page"},
        }
    )

    assert text == (
        "One post on your Page, paused: waiting for you to reconnect your Facebook Page."
    )
