"""Where an album goes (issue 10, item 2), through the runtime's decision on fakes: a Graph in
memory with scripted faults, a bucket and a publisher in memory, the real store on SQLite.

- Facebook refuses to create the album for good: the album becomes one multi-photo post by
  itself, says why, and sends every photo once, unpublished, to the Page;
- the post is the album's second job: one `POST /{page-id}/feed` attaching the photo ids, then
  the album's settled event (its email), exactly once even when the post's answer was lost;
- an existing album of the Page gets the photos, and no album is created;
- a post Facebook refuses (its photos expired) fails with a reason saying what to do, and the
  album still settles once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.uploader.fake_graph import FakeGraph, Fault
from services.uploader.feed_poster import FeedPoster, attached_photos
from services.uploader.handler import ImageUploader, Policy
from services.uploader.pages import PageClient
from shared.adapters.fake_s3 import FakeS3
from shared.adapters.graph_client import GraphError, GraphNetworkError
from shared.broker.fake_publisher import FakePublisher
from shared.contracts import messages, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, Fate, decide
from tests.unit.stores import new_store

BUCKET = "unit"
#: Facebook's answer to `POST /{page-id}/albums` today, as the simulator gives it.
REFUSED = GraphError(
    "(#200) This endpoint is deprecated", http_status=403, code=200, is_transient=False
)


class World:
    def __init__(self, claim_stale_s: float = 130.0) -> None:
        self.store = new_store()
        self.publisher = FakePublisher()
        self.graph = FakeGraph()
        self.s3 = FakeS3()
        outbox = Outbox(self.store, self.publisher, grace=timedelta(0))  # type: ignore[arg-type]
        policy = Policy(
            (5, 30), max_attempts=3, graph_timeout_s=claim_stale_s, album_claim_margin_s=0.0
        )
        self.uploader = ImageUploader(
            self.store,
            outbox,
            self.graph,  # type: ignore[arg-type]
            self.s3,
            BUCKET,
            policy,
        )
        self.poster = FeedPoster(
            self.store, outbox, lambda _album: PageClient("page", self.graph, None), policy
        )

    def album(
        self,
        count: int,
        destination: tuple[str, str | None] = ("new_album", None),
        description: str | None = None,
    ) -> tuple[str, list[Delivery]]:
        user, _ = self.store.create_user("u@example.com")
        keys = [f"{user.prefix}p{n}.png" for n in range(count)]
        for key in keys:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"png" * 10, ContentType="image/png")
        album_id, rows = self.store.create_album(
            user.id, "Trip", None, keys, destination=destination, description=description
        )
        return album_id, [Delivery(row.body, {}) for row in rows]

    def upload(self, deliveries: list[Delivery]) -> list[Fate]:
        return [decide(self.uploader.route(), d) for d in deliveries]

    def sent(self, kind: type[Any]) -> list[Any]:
        return [
            m
            for m in (messages.decode(o.body) for o in self.publisher.to(topology.WORK_EXCHANGE))
            if isinstance(m, kind)
        ]

    def post(self, request: messages.FeedPostRequested, attempt: int = 1) -> Fate:
        headers = {"album-attempt": attempt} if attempt > 1 else {}
        return decide(self.poster.route(), Delivery(messages.encode(request), headers))


@pytest.fixture
def world() -> World:
    return World()


def test_a_refused_album_becomes_one_post_and_no_photo_is_sent_twice(world: World) -> None:
    world.graph.plan("create_album", Fault(REFUSED))
    album_id, deliveries = world.album(5)

    fates = world.upload(deliveries)

    assert [f.kind for f in fates] == ["ack"] * 5
    assert world.graph.calls["create_album"] == 1 and world.graph.albums == {}
    photos = world.graph.photos
    assert len(photos) == 5 and {p["album_id"] for p in photos} == {world.graph.page_id}
    assert all(p["published"] is False for p in photos)
    album = world.store.album(album_id)
    assert album is not None and album.destination == "post"
    assert album.destination_note and "refused to create an album" in album.destination_note
    # The email waits for the post: no settled event yet, one post request.
    assert world.sent(messages.AlbumSettled) == []
    [request] = world.sent(messages.FeedPostRequested)
    assert request.album_id == album_id and album.post_state == "pending"
    assert album.state == "publishing"  # until the post ended


def test_the_post_attaches_every_photo_once_then_the_album_settles(world: World) -> None:
    world.graph.plan("create_album", Fault(REFUSED))
    album_id, deliveries = world.album(20)
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)

    assert world.post(request).kind == "ack"
    assert world.post(request).kind == "ack"  # a duplicate: acked, not posted again

    [post] = world.graph.posts
    assert post["message"] == "Trip"
    assert post["media"] == [p["id"] for p in world.graph.photos]
    [settled] = world.sent(messages.AlbumSettled)
    assert len(settled.uploaded) == 20
    album = world.store.album(album_id)
    assert album is not None and album.post_state == "posted" and album.fb_post_id == post["id"]


def test_the_posts_message_is_the_title_then_the_description(world: World) -> None:
    """A post has one text, its message: the album's title and, below it, its description
    (an album created on Facebook takes the description as its own message)."""
    world.graph.plan("create_album", Fault(REFUSED))
    _, deliveries = world.album(2, description="Two weeks by the sea.\nMostly rain.")
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    assert world.post(request).kind == "ack"
    [post] = world.graph.posts
    assert post["message"] == "Trip\n\nTwo weeks by the sea.\nMostly rain."


def test_a_post_whose_answer_was_lost_is_found_not_posted_again() -> None:
    world = World(claim_stale_s=0.0)  # the lost post's claim lapses at once
    world.graph.plan("create_album", Fault(REFUSED))
    album_id, deliveries = world.album(3)
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    world.graph.plan("create_post", Fault(GraphNetworkError("read timed out"), land=True))

    first = world.post(request)
    assert first.kind == "retry"
    assert world.sent(messages.AlbumSettled) == []
    second = world.post(request, attempt=2)

    assert second.kind == "ack"
    assert world.graph.calls["create_post"] == 1 and len(world.graph.posts) == 1
    assert len(world.sent(messages.AlbumSettled)) == 1
    album = world.store.album(album_id)
    assert album is not None and album.fb_post_id == world.graph.posts[0]["id"]


def test_a_lost_answer_keeps_the_claim_so_a_duplicate_does_not_post(world: World) -> None:
    world.graph.plan("create_album", Fault(REFUSED))
    _, deliveries = world.album(2)
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    world.graph.plan("create_post", Fault(GraphNetworkError("read timed out"), land=True))
    world.post(request)

    again = world.post(request, attempt=2)

    # Held back (Busy: a retry copy that spends no attempt), neither posted nor looked for.
    assert again.kind == "retry" and world.graph.calls["create_post"] == 1
    assert world.graph.calls["list_posts"] == 0 and world.sent(messages.AlbumSettled) == []


def test_an_existing_album_gets_the_photos_and_none_is_created(world: World) -> None:
    world.graph.albums["album-7"] = {"id": "album-7", "name": "Picked", "description": None}
    album_id, deliveries = world.album(4, ("album", "album-7"))

    world.upload(deliveries)

    assert world.graph.calls["create_album"] == 0
    assert [p["album_id"] for p in world.graph.photos] == ["album-7"] * 4
    [settled] = world.sent(messages.AlbumSettled)
    assert len(settled.uploaded) == 4 and world.sent(messages.FeedPostRequested) == []


def test_a_chosen_post_sends_unpublished_photos_without_trying_an_album(world: World) -> None:
    album_id, deliveries = world.album(2, ("post", None))

    world.upload(deliveries)

    assert world.graph.calls["create_album"] == 0
    assert all(p["published"] is False for p in world.graph.photos)
    album = world.store.album(album_id)
    assert album is not None and album.destination_note is None
    assert len(world.sent(messages.FeedPostRequested)) == 1


def test_expired_photos_fail_the_post_with_what_to_do_and_the_album_settles(world: World) -> None:
    album_id, deliveries = world.album(2, ("post", None))
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    world.graph.plan(
        "create_post",
        Fault(
            GraphError(
                "(#100) Invalid parameter: unpublished photo 3 has expired",
                http_status=400,
                code=100,
                is_transient=False,
            )
        ),
    )

    assert world.post(request).kind == "dead"

    album = world.store.album(album_id)
    assert album is not None and album.post_state == "failed"
    assert album.state == "done_with_failures"
    assert album.post_error and "expired" in album.post_error
    assert "publish the album again" in album.post_error
    assert len(world.sent(messages.AlbumSettled)) == 1


def test_an_album_with_no_photo_on_facebook_settles_without_a_post(world: World) -> None:
    album_id, deliveries = world.album(1, ("post", None))
    world.graph.plan(
        "upload_photo",
        Fault(GraphError("(#324) bad", http_status=400, code=324, is_transient=False)),
    )
    world.upload(deliveries)

    assert world.sent(messages.FeedPostRequested) == []
    assert len(world.sent(messages.AlbumSettled)) == 1


def test_attached_photos_reads_graph_subattachments() -> None:
    post = {
        "id": "p",
        "attachments": {
            "data": [
                {"subattachments": {"data": [{"target": {"id": "1"}}, {"target": {"id": "2"}}]}}
            ]
        },
    }
    assert attached_photos(post) == {"1", "2"}
    assert attached_photos({"id": "q"}) == set()


def test_a_failed_post_reopens_as_a_new_settle_and_posts(world: World) -> None:
    album_id, deliveries = world.album(2, ("post", None))
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    world.graph.plan(
        "create_post",
        Fault(GraphError("(#100) expired", http_status=400, code=100, is_transient=False)),
    )
    world.post(request)

    rows = world.store.reopen_post(album_id)

    [again] = [messages.decode(row.body) for row in rows]
    assert isinstance(again, messages.FeedPostRequested)
    assert again.settle_seq == request.settle_seq + 1
    assert world.store.reopen_post(album_id) == []  # pending now: nothing more to re-open
    assert world.post(again).kind == "ack" and len(world.graph.posts) == 1
    assert [m.settle_seq for m in world.sent(messages.AlbumSettled)] == [1, 2]


def test_the_email_of_a_post_links_it_or_says_why_it_failed() -> None:
    from services.notifier.email_message import AlbumEmail, compose
    from shared.contracts.destinations import post_url

    event = messages.AlbumSettled(
        album_id="a",
        settle_seq=1,
        uploaded=[messages.UploadedImage(image_id=1, key="u/p.png", photo_id="3")],
        failed=[],
    )
    url = post_url("1000_2000")
    posted = compose(
        AlbumEmail(
            "u@example.com",
            "Trip",
            "http://x/albums/a",
            event,
            url,
            None,
            "Facebook refused to create an album (...)",
        ),
        "from@x",
    )
    assert url == "https://www.facebook.com/1000/posts/2000"
    text = posted.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert url in text and "refused to create an album" in text
    failed = compose(
        AlbumEmail(
            "u@example.com",
            "Trip",
            "http://x/albums/a",
            event,
            None,
            "photos expired; publish the album again",
        ),
        "from@x",
    )
    assert failed["Subject"] == "Your album 'Trip' could not be posted to Facebook"
    assert "publish the album again" in failed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_the_destination_is_validated_with_a_reason() -> None:
    from services.api.idempotency import fingerprint
    from services.api.validation import InvalidAlbum, parse_album

    base = {"title": "T", "images": ["u/1.png"]}
    assert parse_album(base, "u/", 10).destination.kind == "new_album"
    picked = parse_album({**base, "destination": {"kind": "album", "id": "123"}}, "u/", 10)
    assert picked.destination.id == "123"
    for bad, why in (
        ({"kind": "album"}, "needs its"),
        ({"kind": "post", "id": "1"}, "only with"),
        ({"kind": "wall"}, "destination.kind"),
    ):
        with pytest.raises(InvalidAlbum) as refused:
            parse_album({**base, "destination": bad}, "u/", 10)
        assert why in " ".join(refused.value.details), refused.value.details
    # The default keeps the fingerprint an album had before destinations existed.
    plain = parse_album(base, "u/", 10)
    assert fingerprint(plain) == fingerprint(
        parse_album({**base, "destination": {"kind": "new_album"}}, "u/", 10)
    )
    assert fingerprint(plain) != fingerprint(
        parse_album({**base, "destination": {"kind": "post"}}, "u/", 10)
    )


def test_a_throttled_look_for_an_earlier_post_waits_as_facebook_asks() -> None:
    """Looking for the post a lost answer may have made is a Graph call like any other: a
    throttle there waits without spending an attempt (it is no internal error)."""
    world = World(claim_stale_s=0.0)
    world.graph.plan("create_album", Fault(REFUSED))
    _, deliveries = world.album(2)
    world.upload(deliveries)
    [request] = world.sent(messages.FeedPostRequested)
    world.graph.plan("create_post", Fault(GraphNetworkError("read timed out"), land=True))
    assert world.post(request).kind == "retry"
    world.graph.plan(
        "list_posts",
        Fault(GraphError("(#32) Page request limit reached", http_status=400, code=32)),
    )
    second = world.post(request, attempt=2)
    (copy,) = second.outgoing
    assert second.kind == "retry" and copy.headers["album-attempt"] == 2  # no attempt spent
    assert world.graph.calls["create_post"] == 1


def test_a_forged_post_request_posts_nothing_the_store_did_not_ask_for(world: World) -> None:
    """The request names an album and its settle only: the text and the photos are the
    store's, and an album not waiting for a post (or a settle that never happened) gets none."""
    album_id, deliveries = world.album(2)  # a new album: its photos go there, no post
    world.upload(deliveries)
    for settle_seq in (1, 2, 99):
        forged = messages.FeedPostRequested(album_id=album_id, settle_seq=settle_seq)
        assert world.post(forged).kind == "ack"
    assert world.graph.posts == []
    album = world.store.album(album_id)
    assert album is not None and album.state == "done" and album.post_state is None
