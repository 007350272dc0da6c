"""The uploader's handler through the runtime's decision, on fakes: a Graph client, a bucket and
a publisher in memory, the real store on a SQLite file. No broker, no HTTP, milliseconds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from services.uploader.fake_graph_client import FakeGraphClient
from services.uploader.handler import ImageUploader, Policy, in_flight_window
from shared.adapters.fake_s3 import FakeS3
from shared.adapters.graph_client import GraphError, GraphNetworkError
from shared.broker.fake_publisher import FakePublisher
from shared.contracts import dead_letters, messages, topology
from shared.delivery.outbox import Outbox
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, decide
from shared.store.tables import utcnow
from tests.integration.store_blips import age_image
from tests.present import present
from tests.unit.stores import new_store

BUCKET = "unit"


class World:
    def __init__(self) -> None:
        self.store = new_store()
        self.publisher = FakePublisher()
        self.graph = FakeGraphClient()
        self.s3 = FakeS3()
        self.uploader = ImageUploader(
            self.store,
            Outbox(self.store, self.publisher, grace=timedelta(0)),  # type: ignore[arg-type]
            self.graph,  # type: ignore[arg-type]
            self.s3,
            BUCKET,
            Policy((5, 30), max_attempts=3),
        )

    def album(self, count: int = 1, missing: tuple[int, ...] = ()) -> tuple[str, list[Delivery]]:
        user, _ = self.store.create_user(f"u{len(self.s3.objects)}@example.com")
        keys = [f"{user.prefix}p{n}.png" for n in range(count)]
        for n, key in enumerate(keys):
            if n not in missing:
                self.s3.put_object(
                    Bucket=BUCKET, Key=key, Body=b"png" * 10, ContentType="image/png"
                )
        album_id, rows = self.store.create_album(user.id, "Unit", None, keys)
        return album_id, [Delivery(row.body, {}) for row in rows]

    def deliver(self, delivery: Delivery) -> Fate:
        return decide(self.uploader.route(), delivery)

    def settled(self) -> list[messages.AlbumSettled]:
        return [
            m
            for m in (messages.decode(o.body) for o in self.publisher.to(topology.WORK_EXCHANGE))
            if isinstance(m, messages.AlbumSettled)
        ]


@pytest.fixture
def world() -> World:
    return World()


def test_an_image_is_uploaded_and_its_album_settles(world: World) -> None:
    album_id, (delivery,) = world.album()
    assert world.deliver(delivery) == Fate()
    (photo,) = world.graph.photos
    album = present(world.store.album(album_id))
    assert album.state == "done" and album.images[0].photo_id == photo["id"]
    assert [e.album_id for e in world.settled()] == [album_id]


def test_a_duplicate_of_an_uploaded_image_is_acked_without_a_second_photo(world: World) -> None:
    _, (delivery,) = world.album()
    world.deliver(delivery)
    assert world.deliver(delivery) == Fate()
    assert len(world.graph.photos) == 1


def test_a_temporary_graph_failure_retries_and_the_page_shows_when(world: World) -> None:
    album_id, (delivery,) = world.album()
    world.graph.upload_failures.append(GraphError("temporary", http_status=500, code=2))
    fate = world.deliver(delivery)
    (copy,) = fate.outgoing
    assert fate.kind == "retry" and copy.headers[retry_policy.ATTEMPT_HEADER] == 2
    image = present(world.store.album(album_id)).images[0]
    assert image.state == "retrying" and image.next_attempt_at is not None


def test_an_attempt_in_doubt_shows_its_next_try_once_its_request_can_no_longer_land(
    world: World,
) -> None:
    """A 5xx may have posted the photo: the next attempt waits out the request's in-flight
    window (the take bounces its copy until then), so that is the time the page shows, not
    the copy's first tier of 5 s."""
    album_id, (delivery,) = world.album()
    world.graph.upload_failures.append(GraphError("temporary", http_status=500, code=2))
    before = utcnow()
    world.deliver(delivery)
    image = present(world.store.album(album_id)).images[0]
    window = in_flight_window(world.uploader.policy.graph_timeout_s)
    assert present(image.next_attempt_at) >= before + window - timedelta(seconds=1)
    assert present(image.next_attempt_at) <= utcnow() + window


def test_a_failure_that_reached_no_facebook_shows_its_tier(world: World) -> None:
    album_id, (delivery,) = world.album()
    refused = GraphNetworkError("refused", request_sent=False, cause="the connection was refused")
    world.graph.upload_failures.append(refused)
    before = utcnow()
    world.deliver(delivery)
    shown = present(present(world.store.album(album_id)).images[0].next_attempt_at)
    # The first tier, 5 s, or its jittered twin (x 1.25: 7 s).
    assert before + timedelta(seconds=4) <= shown <= utcnow() + timedelta(seconds=8)


def test_throttling_spends_no_attempt(world: World) -> None:
    _, (delivery,) = world.album()
    world.graph.upload_failures.append(GraphError("slow down", http_status=400, code=613))
    (copy,) = world.deliver(delivery).outgoing
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 1


def test_a_missing_object_fails_with_its_dead_letter_and_settle_through_the_outbox(
    world: World,
) -> None:
    album_id, (delivery,) = world.album(missing=(0,))
    # The outbox sent the letter with the failure, not the runtime.
    assert world.deliver(delivery) == Fate("dead", (), 404)  # S3's status, for the metrics
    image = present(world.store.album(album_id)).images[0]
    assert (image.state, image.error) == ("failed", "not found in the bucket")
    (letter,) = world.publisher.to(topology.DEAD_EXCHANGE)
    assert letter.headers[dead_letters.REASON_HEADER] == "not found in the bucket"
    assert letter.body == delivery.body
    assert world.settled()[0].failed[0].reason == "not found in the bucket"


def test_the_last_attempt_gives_up_with_the_attempts_in_its_reason(world: World) -> None:
    album_id, (delivery,) = world.album()
    world.graph.upload_failures.append(GraphError("temporary", http_status=500, code=2))
    world.deliver(delivery)  # attempt 1 taken and failed: the image is retrying
    # A 500 leaves attempt 1 in doubt: the next may start once it can no longer land.
    age_image(world.store, present(world.store.album(album_id)).images[0].id)
    last = Delivery(delivery.body, {retry_policy.ATTEMPT_HEADER: 3})
    world.graph.upload_failures.append(GraphError("temporary", http_status=500, code=2))
    assert world.deliver(last).kind == "dead"
    image = present(world.store.album(album_id)).images[0]
    assert image.state == "failed" and present(image.error).startswith("gave up after 3 attempts")


def test_a_lost_authorisation_fails_the_albums_waiting_images_too(world: World) -> None:
    album_id, (first, _second) = world.album(count=2)
    world.graph.upload_failures.append(GraphError("token expired", http_status=400, code=190))
    world.deliver(first)
    album = present(world.store.album(album_id))
    assert album.state == "done_with_failures"
    assert album.images[1].state == "failed" and present(album.images[1].error).startswith(
        "not sent"
    )


def test_an_image_another_attempt_holds_is_looked_at_again_without_budget(world: World) -> None:
    album_id, (delivery,) = world.album()
    image_id = present(world.store.album(album_id)).images[0].id
    assert world.store.start_attempt(image_id).attempt == 1  # a duplicate is in flight
    fate = world.deliver(delivery)
    (copy,) = fate.outgoing
    assert fate.kind == "retry" and copy.headers[retry_policy.ATTEMPT_HEADER] == 1
    assert present(world.store.album(album_id)).images[0].state == "uploading"  # nothing recorded
    assert world.graph.photos == []


def test_an_image_the_store_does_not_know_is_poison(world: World) -> None:
    body = messages.encode(messages.ImageUploadRequested(album_id="x", image_id=999, key="k"))
    fate = world.deliver(Delivery(body, {}))
    (letter,) = fate.outgoing
    assert (
        fate.kind == "poison" and "not in the store" in letter.headers[dead_letters.REASON_HEADER]
    )


def test_the_store_failing_as_the_photo_is_recorded_is_an_outage_not_a_failed_image(
    world: World,
) -> None:
    album_id, (delivery,) = world.album()

    def down(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("UPDATE images", {}, ConnectionResetError("reset"))

    world.store.record_uploaded = down  # type: ignore[method-assign, assignment]
    fate = world.deliver(delivery)
    (copy,) = fate.outgoing
    assert fate.kind == "outage" and copy.headers[retry_policy.ATTEMPT_HEADER] == 1
    assert present(world.store.album(album_id)).images[0].state != "failed"
    assert world.publisher.to(topology.DEAD_EXCHANGE) == []


@pytest.mark.parametrize(
    ("name", "body", "content_type", "reason"),
    [
        (
            "big.jpg",
            b"\xff\xd8\xff" + bytes(12 * 1024 * 1024 - 3),
            "image/jpeg",
            "12.0 MB is over Facebook's 10 MB limit for a photo: resize it and retry",
        ),
        (
            "pic.webp",
            b"RIFF\x00\x00\x00\x00WEBPVP8 ",
            "binary/octet-stream",
            "WebP is not a format Facebook takes for photos (JPEG, PNG, GIF, BMP or TIFF): "
            "convert it and retry",
        ),
    ],
)
def test_what_facebook_refuses_fails_at_once_and_sends_nothing(
    world: World, name: str, body: bytes, content_type: str, reason: str
) -> None:
    user, _ = world.store.create_user("limits@example.com")
    key = f"{user.prefix}{name}"
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)
    album_id, (row,) = world.store.create_album(user.id, "Limits", None, [key])
    assert world.deliver(Delivery(row.body, {})) == Fate("dead", ())
    assert world.graph.photos == []
    image = present(world.store.album(album_id)).images[0]
    assert (image.state, image.error, image.attempts) == ("failed", reason, 1)
    (letter,) = world.publisher.to(topology.DEAD_EXCHANGE)
    assert letter.headers[dead_letters.REASON_HEADER] == reason


def test_no_internal_mark_reaches_a_public_field_on_facebook(world: World) -> None:
    """Captions and descriptions are public: they carry what the user wrote, never our ids."""
    album_id, deliveries = world.album(count=3)
    for delivery in deliveries:
        assert world.deliver(delivery) == Fate()
    image_ids = [str(i.id) for i in present(world.store.album(album_id)).images]
    public = (
        [p["name"] or "" for p in world.graph.photos]
        + [a["name"] or "" for a in world.graph.albums]
        + [a["description"] or "" for a in world.graph.albums]
    )
    leaked = [
        text
        for text in public
        if "ref:" in text
        or album_id in text
        or any(word in image_ids for word in text.replace(":", " ").split())
    ]
    assert leaked == []


def _forged(delivery: Delivery, **fields: Any) -> Delivery:
    """The delivery's message with some fields replaced, as anyone who may publish could."""
    message = messages.decode(delivery.body)
    return Delivery(messages.encode(message.model_copy(update=fields)), {})


def test_a_message_naming_another_object_is_dead_lettered_and_uploads_nothing(world: World) -> None:
    _, (theirs,) = world.album()
    album_id, (mine,) = world.album()
    other_key = messages.decode(theirs.body).key  # type: ignore[union-attr]
    fate = world.deliver(_forged(mine, key=other_key))
    assert [p["filename"] for p in world.graph.photos] == []
    assert fate.kind == "poison"
    (letter,) = fate.outgoing
    assert letter.headers[dead_letters.REASON_HEADER] == (
        "message does not match the stored image: key differs"
    )
    # The forged message failed nothing: the image still waits, and its real message uploads.
    assert present(world.store.album(album_id)).images[0].state == "queued"
    assert world.deliver(mine) == Fate()
    (photo,) = world.graph.photos
    assert present(world.store.album(album_id)).images[0].photo_id == photo["id"]


def test_a_message_naming_another_album_is_dead_lettered_and_touches_neither(world: World) -> None:
    their_album, _ = world.album()
    album_id, (mine,) = world.album()
    fate = world.deliver(_forged(mine, album_id=their_album))
    assert (fate.kind, fate.outgoing[0].headers[dead_letters.REASON_HEADER]) == (
        "poison",
        "message does not match the stored image: album differs",
    )
    assert world.graph.photos == [] and world.graph.albums == []
    assert present(world.store.album(album_id)).images[0].state == "queued"
    assert present(world.store.album(their_album)).images[0].state == "queued"


def test_the_log_says_when_an_attempt_in_doubt_goes_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The runtime logs its copy's tier (5 s); the next attempt waits for the window: said."""
    _, (delivery,) = world.album()
    world.graph.upload_failures.append(GraphError("temporary", http_status=500, code=2))
    with caplog.at_level("INFO", logger="services.uploader.handler"):
        world.deliver(delivery)
    said = [r.getMessage() for r in caplog.records if "may still reach Facebook" in r.getMessage()]
    assert len(said) == 1 and " in 12" in said[0], said
