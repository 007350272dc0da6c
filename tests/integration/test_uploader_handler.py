"""The uploader's handler against the real store, the Graph simulator and moto's S3: one
photo per image whatever is redelivered, one Facebook album per album, failures recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from dev.images import png
from services.uploader.circuit_breaker import CircuitBreaker
from services.uploader.handler import ImageUploader, Policy
from shared.adapters.graph_client import GraphClient
from shared.broker.publisher import Publisher
from shared.contracts import dead_letters, messages, topology
from shared.contracts.outgoing import Outgoing
from shared.delivery.outbox import Outbox
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, decide
from shared.store import Store
from tests.present import present

from .helpers import (
    PAGE_ID,
    TOKEN,
    VERSION,
    get_all,
    set_faults,
    sim_photos,
    uploader_publisher,
    wait_for,
)
from .store_blips import BlippingStore, age_image

pytestmark = pytest.mark.integration

BUCKET = "handler-test"
POLICY = Policy(retry_delays=(1, 3), max_attempts=3)


@pytest.fixture()
def publisher(amqp_url: str) -> Iterator[Publisher]:
    with uploader_publisher(
        amqp_url, POLICY.retry_delays, (topology.ALBUM_SETTLED.name,)
    ) as publisher:
        yield publisher


@pytest.fixture()
def world(
    sqlite_store: Store, sim: str, s3_client: Any, publisher: Publisher
) -> Callable[..., ImageUploader]:
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)

    def make(
        timeout: tuple[float, float] = (5.0, 30.0),
        breaker: CircuitBreaker | None = None,
        policy: Policy = POLICY,
        store: Store | None = None,
    ) -> ImageUploader:
        graph = GraphClient(sim, VERSION, PAGE_ID, TOKEN, timeout=timeout)
        return ImageUploader(
            store or sqlite_store,
            Outbox(sqlite_store, publisher, grace=timedelta(0)),
            graph,
            s3_client,
            BUCKET,
            policy,
            breaker,
        )

    return make


def run(uploader: ImageUploader, delivery: Delivery) -> Fate:
    """As the consumer runtime runs the handler: the message's fate."""
    return decide(uploader.route(), delivery)


def album_of(
    store: Store, s3_client: Any, count: int, broken: Collection[int] = ()
) -> tuple[str, list[Delivery], dict[str, str]]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    keys: list[str] = []
    hashes: dict[str, str] = {}
    for n in range(count):
        key = f"{user.prefix}{uuid.uuid4().hex[:6]}-{n}.png"
        if n not in broken:
            body = png(48, 32, seed=n)
            s3_client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/png")
            hashes[key] = hashlib.sha256(body).hexdigest()
        keys.append(key)
    album_id, rows = store.create_album(user.id, "Handler test", None, keys)
    return (
        album_id,
        [Delivery(row.body, {}, False, row.message_id, "image.upload") for row in rows],
        hashes,
    )


def test_an_image_is_uploaded_recorded_and_settles_its_album(
    world: Callable[..., ImageUploader],
    sqlite_store: Store,
    s3_client: Any,
    sim: str,
    amqp_url: str,
) -> None:
    album_id, (delivery,), hashes = album_of(sqlite_store, s3_client, 1)
    assert run(world(), delivery).outgoing == ()
    album = present(sqlite_store.album(album_id))
    (photo,) = sim_photos(sim)
    assert album.state == "done" and album.images[0].photo_id == photo["id"]
    assert photo["sha256"] == next(iter(hashes.values()))
    settled = [messages.decode(b) for _, b in get_all(amqp_url, topology.ALBUM_SETTLED.name)]
    assert [e.album_id for e in settled] == [album_id]


def test_a_redelivered_uploaded_image_is_acked_without_uploading_again(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    _, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    uploader = world()
    run(uploader, delivery)
    assert run(uploader, delivery).outgoing == ()
    assert len(sim_photos(sim)) == 1


def test_a_photo_sent_before_a_timeout_is_found_not_sent_again(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    set_faults(sim, {"latency_s": 1.5})
    outcome = run(world(timeout=(5.0, 0.5)), delivery)
    (retry,) = outcome.outgoing
    assert retry.exchange == topology.RETRY_EXCHANGE
    assert present(sqlite_store.album(album_id)).images[0].state == "retrying"
    set_faults(sim, {})
    again = Delivery(delivery.body, retry.headers, False, None, "image.upload")

    wait_for(lambda: sim_photos(sim), what="the slow upload to land")
    # Only once the first request can no longer land may the next attempt read the album.
    age_image(sqlite_store, present(sqlite_store.album(album_id)).images[0].id)
    assert run(world(), again).outgoing == ()
    (photo,) = sim_photos(sim)
    image = present(sqlite_store.album(album_id)).images[0]
    assert image.state == "uploaded" and image.photo_id == photo["id"] and image.attempts == 2


def test_one_facebook_album_however_many_images_race(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, deliveries, _ = album_of(sqlite_store, s3_client, 8)
    uploader = world()
    threads = [threading.Thread(target=run, args=(uploader, d)) for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    albums = requests.get(f"{sim}/_sim/albums", timeout=5).json()["albums"]
    assert len(albums) == 1
    assert {p["album_id"] for p in sim_photos(sim)} == {albums[0]["id"]}
    assert present(sqlite_store.album(album_id)).state == "done"


def test_a_missing_object_fails_with_its_dead_letter_in_the_outbox(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, amqp_url: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1, broken={0})
    assert run(world(), delivery).outgoing == ()
    image = present(sqlite_store.album(album_id)).images[0]
    assert (image.state, image.error) == ("failed", "not found in the bucket")
    (dead,) = get_all(amqp_url, topology.dead_letter_queue_name(topology.IMAGE_UPLOADS))
    assert dead[0].headers[dead_letters.REASON_HEADER] == "not found in the bucket"
    assert dead[1] == delivery.body


def test_poison_gets_a_dead_letter_and_touches_nothing(world: Callable[..., ImageUploader]) -> None:
    outcome = run(world(), Delivery(b'{"type": "album.settled"}', {}, False, None, "image.upload"))
    (letter,) = outcome.outgoing
    assert letter.exchange == topology.DEAD_EXCHANGE
    assert "invalid message" in letter.headers[dead_letters.REASON_HEADER]


def test_throttling_waits_in_a_long_enough_tier_without_spending_attempts(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    _, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    set_faults(sim, {"error_rates": {"613": 1.0}, "throttle_minutes": 0})
    (retry,) = run(world(), delivery).outgoing
    assert retry.headers[retry_policy.ATTEMPT_HEADER] == 1
    assert retry.routing_key in {
        topology.retry_queue_name(topology.IMAGE_UPLOADS, tier)
        for tier in topology.jittered(POLICY.retry_delays[0])
    }


def test_a_lost_authorisation_stops_the_albums_waiting_images(
    world: Callable[..., ImageUploader],
    sqlite_store: Store,
    s3_client: Any,
    sim: str,
    amqp_url: str,
) -> None:
    album_id, deliveries, _ = album_of(sqlite_store, s3_client, 3)
    uploader = world()
    set_faults(sim, {"error_rates": {"190": 1.0}})
    assert run(uploader, deliveries[0]).outgoing == ()
    album = present(sqlite_store.album(album_id))
    assert album.state == "done_with_failures"
    first, *others = album.images
    assert "reconnect your Facebook page" in present(first.error) and first.attempts == 1
    assert all(
        i.state == "failed" and present(i.error).startswith("not sent: ") and i.attempts == 0
        for i in others
    )
    set_faults(sim, {})
    for delivery in deliveries[1:]:
        assert run(uploader, delivery).outgoing == ()
    assert sim_photos(sim) == []
    settled = get_all(amqp_url, topology.ALBUM_SETTLED.name)
    assert len(settled) == 1


def test_broad_graph_failures_open_the_breaker(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    _, deliveries, _ = album_of(sqlite_store, s3_client, 2)
    breaker = CircuitBreaker(min_calls=2, failure_ratio=0.5, cooldown_s=60)
    uploader = world(breaker=breaker)
    set_faults(sim, {"error_rates": {"503": 1.0}})
    for delivery in deliveries:
        run(uploader, delivery)
    assert breaker.open_for() > 0


def test_refused_images_do_not_open_the_breaker(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    _, deliveries, _ = album_of(sqlite_store, s3_client, 3)
    breaker = CircuitBreaker(min_calls=2, failure_ratio=0.5, cooldown_s=60)
    set_faults(sim, {"reject_filenames": [".png"]})
    for delivery in deliveries:
        run(world(breaker=breaker), delivery)
    assert breaker.open_for() == 0


def test_an_album_created_by_a_worker_that_died_is_adopted_not_created_again(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    # A worker created the album on Facebook, then died before recording it.
    requests.post(
        f"{sim}/{VERSION}/{PAGE_ID}/albums",
        timeout=5,
        data={"name": "Handler test"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).raise_for_status()
    assert sqlite_store.claim_fb_album(album_id, timedelta(seconds=60)).mine
    # Long enough ago that the claim lapsed: its create can no longer land.
    age_image(sqlite_store, present(sqlite_store.album(album_id)).images[0].id)
    run(world(), delivery)
    albums = requests.get(f"{sim}/_sim/albums", timeout=5).json()["albums"]
    assert len(albums) == 1
    assert present(sqlite_store.album(album_id)).fb_album_id == albums[0]["id"]


def test_an_album_create_that_timed_out_is_found_by_the_next_attempt_not_made_again(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (first, second), _ = album_of(sqlite_store, s3_client, 2)
    # The create takes longer than the client waits: it times out, and Facebook makes it.
    set_faults(sim, {"latency_s": 1.0, "endpoints": ["albums"]})
    assert run(world(timeout=(5.0, 0.3)), first).outgoing
    wait_for(lambda: _sim_albums(sim), what="the timed-out create to land")
    set_faults(sim, {})

    assert run(world(), second).outgoing == ()
    (fb_album,) = _sim_albums(sim)
    assert present(sqlite_store.album(album_id)).fb_album_id == fb_album["id"]
    assert {p["album_id"] for p in sim_photos(sim)} == {fb_album["id"]}


def test_duplicates_taken_side_by_side_send_one_photo(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    set_faults(sim, {"latency_s": 1.0})
    uploader = world()
    outcomes = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(run(uploader, delivery))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sim_photos(sim)) == 1
    retried = [o for o in outcomes if o.outgoing]
    assert len(retried) == 1 and retried[0].outgoing[0].exchange == topology.RETRY_EXCHANGE
    assert retried[0].outgoing[0].headers[retry_policy.ATTEMPT_HEADER] == 1
    assert present(sqlite_store.album(album_id)).images[0].attempts == 1


def _sim_albums(sim: str) -> list[dict[str, Any]]:
    albums: list[dict[str, Any]] = requests.get(f"{sim}/_sim/albums", timeout=5).json()["albums"]
    return albums


def test_a_store_error_mid_upload_is_raised_for_a_requeue_not_a_failed_image(
    world: Callable[..., ImageUploader],
    sqlite_store: Store,
    s3_client: Any,
    sim: str,
    amqp_url: str,
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    dead_letter_queue = topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
    get_all(amqp_url, dead_letter_queue)
    # The album is made on Facebook, then the store fails to record it: the store's fault,
    # not the image's. Classified, it would be "internal error", a permanent failure.
    blipping = BlippingStore(sqlite_store, "set_fb_album")
    # Not the image's fault: it waits out the outage, its attempt unspent.
    fate = run(world(store=blipping), delivery)
    assert fate.kind == "outage"
    assert fate.outgoing[0].headers[retry_policy.ATTEMPT_HEADER] == 1
    assert blipping.blips == 1
    image = present(sqlite_store.album(album_id)).images[0]
    assert image.state != "failed" and image.error is None
    assert get_all(amqp_url, dead_letter_queue) == []
    assert sim_photos(sim) == []

    # The runtime puts the message back; it comes round once the attempt's lease lapsed.
    age_image(sqlite_store, image.id)
    again = dataclasses.replace(delivery, redelivered=True)
    assert run(world(store=blipping), again).outgoing == ()
    (fb_album,) = _sim_albums(sim)  # the one the first attempt made, adopted by its mark
    (photo,) = sim_photos(sim)
    album = present(sqlite_store.album(album_id))
    assert album.state == "done" and album.fb_album_id == fb_album["id"]
    assert album.images[0].state == "uploaded" and album.images[0].photo_id == photo["id"]
    assert get_all(amqp_url, dead_letter_queue) == []


def test_a_store_error_recording_the_upload_is_raised_and_the_photo_found_not_sent_again(
    world: Callable[..., ImageUploader],
    sqlite_store: Store,
    s3_client: Any,
    sim: str,
    amqp_url: str,
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    dead_letter_queue = topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
    get_all(amqp_url, dead_letter_queue)
    # The photo reached Facebook; the store fails as its id is recorded.
    blipping = BlippingStore(sqlite_store, "record_uploaded")
    # Not the image's fault: it waits out the outage, its attempt unspent.
    fate = run(world(store=blipping), delivery)
    assert fate.kind == "outage"
    assert fate.outgoing[0].headers[retry_policy.ATTEMPT_HEADER] == 1
    assert blipping.blips == 1
    (sent,) = sim_photos(sim)
    image = present(sqlite_store.album(album_id)).images[0]
    assert image.state != "failed" and image.photo_id is None
    assert get_all(amqp_url, dead_letter_queue) == []

    age_image(sqlite_store, image.id)
    again = dataclasses.replace(delivery, redelivered=True)
    assert run(world(store=blipping), again).outgoing == ()
    assert sim_photos(sim) == [sent]  # found by its caption mark, not sent a second time
    album = present(sqlite_store.album(album_id))
    assert album.state == "done"
    assert album.images[0].state == "uploaded" and album.images[0].photo_id == sent["id"]
    assert album.images[0].attempts == 2
    settled = [messages.decode(b) for _, b in get_all(amqp_url, topology.ALBUM_SETTLED.name)]
    assert [e.album_id for e in settled] == [album_id]


def test_facebook_shows_the_users_words_and_no_mark_of_ours_even_after_a_timeout(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    user, _ = sqlite_store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    keys = [f"{user.prefix}{n}.png" for n in range(3)]
    for n, key in enumerate(keys):
        s3_client.put_object(
            Bucket=BUCKET, Key=key, Body=png(48 + n * 16, 32, seed=n), ContentType="image/png"
        )
    album_id, rows = sqlite_store.create_album(
        user.id, "Summer", None, keys, ["Beach", None, "Dunes"], "Two weeks by the sea"
    )
    first, *others = [Delivery(row.body, {}, False, row.message_id, "image.upload") for row in rows]
    # The first photo lands after its client gave up: the retry must find it, with no mark.
    set_faults(sim, {"latency_s": 1.5})
    (retry,) = run(world(timeout=(5.0, 0.5)), first).outgoing
    set_faults(sim, {})
    wait_for(lambda: sim_photos(sim), what="the timed-out photo to land")
    age_image(
        sqlite_store, present(sqlite_store.album(album_id)).images[0].id
    )  # its window is over
    assert (
        run(world(), Delivery(first.body, retry.headers, False, None, "image.upload")).outgoing
        == ()
    )
    for delivery in others:
        assert run(world(), delivery).outgoing == ()

    photos, (album,) = sim_photos(sim), _sim_albums(sim)
    assert sorted(p["caption"] for p in photos) == ["", "Beach", "Dunes"]
    assert (album["name"], album["message"]) == ("Summer", "Two weeks by the sea")
    image_ids = {str(i.id) for i in present(sqlite_store.album(album_id)).images}
    public = [p["caption"] for p in photos] + [album["name"], album["message"]]
    assert [
        t
        for t in public
        if "ref:" in t or album_id in t or image_ids & set(t.replace(":", " ").split())
    ] == []
    assert sorted(
        present(i.photo_id) for i in present(sqlite_store.album(album_id)).images
    ) == sorted(p["id"] for p in photos)


def test_a_retry_after_a_read_timeout_waits_until_the_first_request_cannot_land(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    set_faults(sim, {"latency_s": 1.5})
    (retry,) = run(world(timeout=(5.0, 0.5)), delivery).outgoing  # read timeout: sent, or not?
    set_faults(sim, {})
    again = Delivery(delivery.body, retry.headers, False, retry.message_id, "image.upload")
    # Its copy comes back before Facebook is done with the first request: reading the album
    # now finds nothing, so it must not read it yet, let alone send a second photo.
    outcome = run(world(), again)
    time.sleep(2.0)  # the first request lands 1.5 s after it started
    assert len(sim_photos(sim)) == 1
    (wait,) = outcome.outgoing
    assert wait.exchange == topology.RETRY_EXCHANGE
    assert present(sqlite_store.album(album_id)).images[0].attempts == 1


@pytest.mark.slow
def test_a_duplicate_retry_copy_starts_no_second_retry_chain(
    world: Callable[..., ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, (delivery,), _ = album_of(sqlite_store, s3_client, 1)
    set_faults(sim, {"error_rates": {"613": 1.0}, "throttle_minutes": 0})
    uploader = world()
    (copy,) = run(uploader, delivery).outgoing
    as_delivered = Delivery(delivery.body, copy.headers, False, copy.message_id, "image.upload")
    _wait_out(copy)  # the tier hands it back once its wait is over
    (next_copy,) = run(uploader, as_delivered).outgoing  # attempt 2, its own copy
    # The broker delivers the first copy twice: the duplicate follows attempt 1, not 2.
    assert run(uploader, dataclasses.replace(as_delivered, redelivered=True)).outgoing == ()
    assert present(sqlite_store.album(album_id)).images[0].attempts == 2
    set_faults(sim, {})
    after = Delivery(delivery.body, next_copy.headers, False, next_copy.message_id, "image.upload")
    _wait_out(next_copy)
    assert run(uploader, after).outgoing == ()
    assert len(sim_photos(sim)) == 1


def _wait_out(copy: Outgoing) -> None:
    """Sleep until a throttled copy may be taken (its not-before header)."""
    not_before = copy.headers.get(retry_policy.NOT_BEFORE_HEADER)
    if not_before is not None:
        time.sleep(max(0.0, float(not_before) - time.time()) + 0.05)


def test_a_forged_message_naming_another_object_is_dead_lettered_through_the_broker(
    world: Callable[..., ImageUploader],
    sqlite_store: Store,
    s3_client: Any,
    sim: str,
    amqp_url: str,
    publisher: Publisher,
) -> None:
    """Anyone who may publish to the work exchange names another user's object in an image's
    message: the stored key decides, so nothing is uploaded; the letter says why."""
    _, (theirs,), their_hashes = album_of(sqlite_store, s3_client, 1)
    album_id, (mine,), _ = album_of(sqlite_store, s3_client, 1)
    real = messages.decode(mine.body)
    assert isinstance(real, messages.ImageUploadRequested)
    other_key = next(iter(their_hashes))
    forged = messages.encode(real.model_copy(update={"key": other_key}))
    get_all(amqp_url, topology.dead_letter_queue_name(topology.IMAGE_UPLOADS))
    get_all(amqp_url, topology.IMAGE_UPLOADS.name)
    publisher.publish_confirmed(
        [Outgoing(topology.WORK_EXCHANGE, topology.IMAGE_UPLOADS.routing_key, forged)]
    )
    ((props, body),) = get_all(amqp_url, topology.IMAGE_UPLOADS.name)
    fate = run(
        world(),
        Delivery(
            body, props.headers or {}, False, props.message_id, topology.IMAGE_UPLOADS.routing_key
        ),
    )
    publisher.publish_confirmed(list(fate.outgoing))  # as the runtime does, before it acks

    uploaded = [p["sha256"] for p in sim_photos(sim)]
    assert set(uploaded).isdisjoint(their_hashes.values()), "their object was posted"
    assert uploaded == []
    ((letter_props, letter_body),) = get_all(
        amqp_url, topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
    )
    assert letter_body == forged
    assert letter_props.headers[dead_letters.REASON_HEADER] == (
        "message does not match the stored image: key differs"
    )
    assert present(sqlite_store.album(album_id)).images[0].state == "queued"
