"""One Facebook album per album, and read-backs that cost what they must: the uploader's handler
on the real store (SQLite and PostgreSQL) against the in-memory Graph (`fake_graph`), which
counts requests and plays a request that lands but loses its answer, or one that is slow."""

from __future__ import annotations

import io
import logging
import posixpath
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from dev import images
from services.uploader import handler as handler_module
from services.uploader.circuit_breaker import CircuitBreaker
from services.uploader.fake_graph import FakeGraph, Fault
from services.uploader.handler import ImageUploader, Policy
from shared.adapters.graph_client import GraphError, GraphNetworkError
from shared.delivery.outbox import Outbox
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, decide
from shared.store import Store
from shared.store.tables import Album
from tests.present import present

from .helpers import wait_for
from .store_blips import age_image

pytestmark = pytest.mark.integration

POLICY = Policy(retry_delays=(5, 30), max_attempts=4)
#: How a request's answer gets lost: the client's read timeout.
TIMED_OUT = GraphNetworkError(
    "could not complete the Graph API call to https://graph.facebook.com:"
    " timed out waiting for the response"
)
BAD_GATEWAY = GraphError("HTTP 502 Bad Gateway from the Graph API", http_status=502)


class FakeS3:
    """Image n of an album is a PNG (10 + n) x 10: each image's size tells its photo apart."""

    def get_object(
        self,
        Bucket: str,
        Key: str,  # noqa: N803 - boto3's names
        Range: str | None = None,
    ) -> dict[str, Any]:  # noqa: N803
        number = int(posixpath.splitext(posixpath.basename(Key))[0])
        body = images.png(10 + number, 10, seed=number)
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "ContentType": "image/png"}


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def publish_confirmed(self, messages: Sequence[Any], timeout: float | None = None) -> None:
        self.sent.extend(messages)

    def publish_outcomes(
        self, messages: Sequence[Any], timeout: float | None = None
    ) -> list[BaseException | None]:
        self.publish_confirmed(messages, timeout)
        return [None] * len(messages)


def worker(
    store: Store, graph: FakeGraph, policy: Policy = POLICY, s3: Any = None
) -> ImageUploader:
    """One uploader process (each test's workers share the store and Facebook)."""
    # A breaker that never opens: these tests fail Graph calls on purpose, and do not wait.
    breaker = CircuitBreaker(min_calls=10**6)
    outbox = Outbox(store, FakePublisher(), grace=timedelta(0))  # type: ignore[arg-type]
    return ImageUploader(
        store,
        outbox,
        graph,  # type: ignore[arg-type]
        s3 or FakeS3(),
        "bucket",
        policy,
        breaker,
    )


def new_album(store: Store, count: int) -> tuple[str, list[Delivery]]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Trip", None, [f"{user.prefix}{n}.png" for n in range(count)]
    )
    return album_id, [Delivery(row.body, {}, False, row.message_id, "image.upload") for row in rows]


def retried(delivery: Delivery, outcome: Fate) -> Delivery:
    """The delivery of the retry copy `outcome` published (as the delay tier hands it back)."""
    (copy,) = outcome.outgoing
    assert copy.headers[retry_policy.ATTEMPT_HEADER] >= 1
    return Delivery(delivery.body, copy.headers, False, None, "image.upload")


def past_in_flight_windows(store: Store, album_id: str) -> None:
    """As if the album's attempts started long ago: a request whose outcome was in doubt (a
    timeout) can no longer land, so the next attempt may read the album back."""
    for image in present(store.album(album_id)).images:
        age_image(store, image.id)


def run(uploader: ImageUploader, delivery: Delivery) -> Fate:
    """As the consumer runtime runs the handler: the message's fate."""
    return decide(uploader.route(), delivery)


def age_claim(store: Store, album_id: str, by: timedelta) -> None:
    """As if the album's claim to create its Facebook album was made `by` earlier."""
    with store.engine.begin() as connection:
        claimed = connection.scalar(select(Album.fb_album_claimed_at).where(Album.id == album_id))
        assert claimed is not None, "the album has no claim to age"
        connection.execute(
            update(Album).where(Album.id == album_id).values(fb_album_claimed_at=claimed - by)
        )


def assert_one_album_holds_every_photo(store: Store, graph: FakeGraph, album_id: str) -> str:
    recorded = present(store.album(album_id)).fb_album_id
    assert recorded is not None
    assert {p["album_id"] for p in graph.photos} == {recorded}, "the photos split"
    return recorded


# -- case 3: a create whose outcome is unknown ------------------------------------------------


def test_a_create_that_timed_out_is_looked_for_not_made_a_second_time(store: Store) -> None:
    graph = FakeGraph()
    album_id, (first, second) = new_album(store, 2)
    # Facebook made the album; the answer never came back.
    graph.plan("create_album", Fault(TIMED_OUT, land=True))
    assert run(worker(store, graph), first).outgoing  # retried later

    assert run(worker(store, graph), second).outgoing == ()  # another worker, the next image
    assert len(graph.albums) == 1, f"created {graph.calls['create_album']} albums"
    assert_one_album_holds_every_photo(store, graph, album_id)


def test_an_uncertain_create_is_made_again_only_once_it_could_no_longer_land(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "_ALBUM_WAIT_S", 0.2)
    graph = FakeGraph()
    album_id, (first, second) = new_album(store, 2)
    # A proxy answered 502: Facebook may or may not have made the album.
    graph.plan("create_album", Fault(BAD_GATEWAY))
    assert run(worker(store, graph), first).outgoing

    waiting = run(worker(store, graph), second)
    assert graph.calls["create_album"] == 1, "created again while the first might still land"
    assert graph.calls["list_albums"] >= 1  # looked for it by its mark
    # Past the Graph timeout and the margin, the first request can no longer land.
    age_claim(store, album_id, timedelta(seconds=POLICY.album_claim_stale_s + 1))
    assert run(worker(store, graph), retried(second, waiting)).outgoing == ()
    assert len(graph.albums) == 1
    assert_one_album_holds_every_photo(store, graph, album_id)


def test_a_slow_create_is_not_taken_over_while_it_may_still_land(store: Store) -> None:
    graph = FakeGraph()
    album_id, (first, second) = new_album(store, 2)
    slow = threading.Event()
    graph.plan("create_album", Fault(gate=slow))
    outcomes: list[Fate] = []
    creator = threading.Thread(target=lambda: outcomes.append(run(worker(store, graph), first)))
    creator.start()
    assert graph.entered["create_album"].wait(5)
    # The create has taken 61 s (longer than the 60 s claims once went stale after), well
    # within the Graph timeout (120 s): it may still land.
    age_claim(store, album_id, timedelta(seconds=61))
    other = threading.Thread(target=lambda: outcomes.append(run(worker(store, graph), second)))
    other.start()
    time.sleep(0.3)
    slow.set()
    creator.join(10)
    other.join(10)
    assert [o.outgoing for o in outcomes] == [(), ()]
    assert graph.calls["create_album"] == 1 and len(graph.albums) == 1
    assert_one_album_holds_every_photo(store, graph, album_id)


def test_a_create_landing_after_a_takeover_loses_to_the_recorded_album(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    graph = FakeGraph()
    album_id, (first, second) = new_album(store, 2)
    slow = threading.Event()
    graph.plan("create_album", Fault(gate=slow))
    outcomes: list[Fate] = []
    creator = threading.Thread(target=lambda: outcomes.append(run(worker(store, graph), first)))
    creator.start()
    assert graph.entered["create_album"].wait(5)
    # Past the Graph timeout and the margin: another worker takes over, finds nothing, creates.
    age_claim(store, album_id, timedelta(seconds=POLICY.album_claim_stale_s + 60))
    assert run(worker(store, graph), second).outgoing == ()
    taker_album = present(store.album(album_id)).fb_album_id
    with caplog.at_level(logging.WARNING, logger=handler_module.__name__):
        slow.set()  # the first create lands at last
        creator.join(10)
    assert outcomes[0].outgoing == ()
    assert len(graph.albums) == 2
    assert assert_one_album_holds_every_photo(store, graph, album_id) == taker_album
    (stray,) = set(graph.albums) - {taker_album}
    assert any(stray in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)


# -- 506: a duplicate means Facebook has the photo ---------------------------------------------


def test_a_duplicate_after_an_empty_read_back_records_the_photo_facebook_has(store: Store) -> None:
    graph = FakeGraph(refuse_duplicates=True)
    album_id, (delivery,) = new_album(store, 1)
    # The photo landed, its answer was lost, and the next read-back does not list it yet.
    graph.plan("upload_photo", Fault(TIMED_OUT, land=True, unlisted=1))
    again = retried(delivery, run(worker(store, graph), delivery))
    past_in_flight_windows(store, album_id)
    assert run(worker(store, graph), again).outgoing == ()
    (photo,) = graph.photos
    image = present(store.album(album_id)).images[0]
    assert (image.state, image.photo_id) == ("uploaded", photo["id"])


def test_a_duplicate_not_found_says_so_rather_than_refused(store: Store) -> None:
    graph = FakeGraph(refuse_duplicates=True)
    album_id, (delivery,) = new_album(store, 1)
    graph.plan("upload_photo", Fault(TIMED_OUT, land=True, unlisted=10))
    again = retried(delivery, run(worker(store, graph), delivery))
    past_in_flight_windows(store, album_id)
    run(worker(store, graph), again)
    image = present(store.album(album_id)).images[0]
    assert image.photo_id is None and image.error is not None
    assert "refused" not in image.error
    assert "506" in image.error and "not in the album" in image.error
    assert len(graph.photos) == 1


# -- reconciliation cost -----------------------------------------------------------------------


def test_an_album_of_20_retried_once_lists_its_photos_once_not_20_times(store: Store) -> None:
    graph = FakeGraph()
    album_id, deliveries = new_album(store, 20)
    # Every first attempt fails: half the photos landed with their answers lost, half did not.
    graph.plan("upload_photo", *[Fault(TIMED_OUT, land=n % 2 == 0) for n in range(20)])
    uploader = worker(store, graph)
    retries = [retried(d, run(uploader, d)) for d in deliveries]
    past_in_flight_windows(store, album_id)
    before = graph.calls["list_album_photos"]
    for delivery in retries:
        assert run(uploader, delivery).outgoing == ()
    listed = graph.calls["list_album_photos"] - before
    assert listed <= 2, f"the album was listed {listed} times for 20 retries"
    album = present(store.album(album_id))
    assert album.state == "done" and len(graph.photos) == 20  # none sent twice
    assert_one_album_holds_every_photo(store, graph, album_id)


class SameSizeS3(FakeS3):
    """Every image the same size (one camera), so only counts and times can tell them apart."""

    def get_object(
        self,
        Bucket: str,
        Key: str,  # noqa: N803
        Range: str | None = None,
    ) -> dict[str, Any]:  # noqa: N803
        number = int(posixpath.splitext(posixpath.basename(Key))[0])
        body = images.png(40, 30, seed=number)
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "ContentType": "image/png"}


def same_size_worker(store: Store, graph: FakeGraph) -> ImageUploader:
    return worker(store, graph, s3=SameSizeS3())


def test_look_alike_photos_that_both_landed_are_paired_once_nothing_is_in_flight(
    store: Store,
) -> None:
    graph = FakeGraph()
    uploader = same_size_worker(store, graph)
    album_id, deliveries = new_album(store, 2)
    graph.plan("upload_photo", Fault(TIMED_OUT, land=True), Fault(TIMED_OUT, land=True))
    retries = [retried(d, decide(uploader.route(), d)) for d in deliveries]
    past_in_flight_windows(store, album_id)
    # Both answers were lost, both photos landed: neither retry waits on the other (both
    # attempts ended), each adopts one photo, and nothing is sent again.
    for delivery in retries:
        assert decide(uploader.route(), delivery).outgoing == ()
    recorded = sorted(present(i.photo_id) for i in present(store.album(album_id)).images)
    assert recorded == sorted(p["id"] for p in graph.photos) and len(set(recorded)) == 2
    assert graph.calls["upload_photo"] == 2


def test_look_alike_photos_one_of_which_landed_fail_rather_than_guess(store: Store) -> None:
    graph = FakeGraph()
    uploader = same_size_worker(store, graph)
    album_id, deliveries = new_album(store, 2)
    graph.plan("upload_photo", Fault(TIMED_OUT, land=True), Fault(TIMED_OUT))
    retries = [retried(d, decide(uploader.route(), d)) for d in deliveries]
    past_in_flight_windows(store, album_id)
    assert [decide(uploader.route(), d).kind for d in retries] == ["dead", "dead"]
    assert graph.calls["upload_photo"] == 2  # no duplicate sent
    failed = present(store.album(album_id)).images
    assert {i.state for i in failed} == {"failed"}
    assert all(present(i.error).startswith("cannot tell which of 1 photos") for i in failed)


class Killed(BaseException):
    """The process died here (SIGKILL): nothing of the handler runs after it."""


def test_an_image_taken_but_never_sent_is_no_rival_for_a_look_alike_photo(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image 0's photo landed with its answer lost; image 1 (the same caption and size) was
    taken by an uploader that died before sending anything. Image 0 adopts its photo, and
    image 1 sends its own: it cannot be on Facebook, so it neither blurs image 0's match nor
    reads the album back as if it might be."""
    graph = FakeGraph()
    s3 = SameSizeS3()
    uploader = worker(store, graph, s3=s3)
    album_id, (first, second) = new_album(store, 2)
    graph.plan("upload_photo", Fault(TIMED_OUT, land=True))
    retry = retried(first, decide(uploader.route(), first))

    def dies_opening(**request: Any) -> Any:
        raise Killed  # the uploader dies opening image 1's object: taken, never sent

    with monkeypatch.context() as dying:
        dying.setattr(s3, "get_object", dies_opening)
        with pytest.raises(Killed):
            decide(uploader.route(), second)
    past_in_flight_windows(store, album_id)

    assert decide(uploader.route(), retry).outgoing == ()
    redelivered = Delivery(second.body, {}, True, second.message_id, "image.upload")
    assert decide(uploader.route(), redelivered).outgoing == ()
    album = present(store.album(album_id))
    assert album.state == "done", [(i.state, i.error) for i in album.images]
    assert sorted(present(i.photo_id) for i in album.images) == sorted(
        p["id"] for p in graph.photos
    )
    assert graph.calls["upload_photo"] == 2  # one each: nothing sent twice


def test_a_look_alike_sent_after_the_ledger_is_read_is_not_adopted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image 1's first attempt sent nothing that landed; its retry reads the album's ledger,
    and just after that image 0 (the same caption and size) uploads its photo, which the
    album's listing then shows. That photo is image 0's: image 1 sends its own rather than
    adopt it (the ledger it matches with is read after the listing, so image 0 is in it)."""
    graph = FakeGraph()
    uploader = same_size_worker(store, graph)
    album_id, (first, second) = new_album(store, 2)
    graph.plan("upload_photo", Fault(TIMED_OUT))  # image 1's send: its answer lost, no photo
    retry = retried(second, decide(uploader.route(), second))
    past_in_flight_windows(store, album_id)
    real = store.album_photo_ledger
    outcomes: list[Fate] = []

    def ledger_then_image_0_sends(*args: Any) -> Any:
        read = real(*args)
        if not outcomes:
            outcomes.append(decide(uploader.route(), first))  # image 0 sends and records
        return read

    monkeypatch.setattr(store, "album_photo_ledger", ledger_then_image_0_sends)
    assert decide(uploader.route(), retry).outgoing == ()
    assert [o.outgoing for o in outcomes] == [()]
    images = present(store.album(album_id)).images
    assert len({i.photo_id for i in images}) == 2, "one photo recorded for both images"
    assert graph.calls["upload_photo"] == 3  # image 1 sent again: its first never landed


def test_a_photo_of_another_album_in_the_same_facebook_album_is_not_adopted(
    store: Store,
) -> None:
    """Two of our albums publish to one existing album of the Page. Album Y's image sent
    nothing that landed; album X's image (the same caption and size) uploaded its photo there.
    Y's retry finds that photo in the Facebook album: it is X's (claimed in X's ledger), so Y
    sends its own rather than adopt it."""
    graph = FakeGraph()
    graph.albums["existing"] = {"id": "existing", "name": "Holidays", "created_time": "now"}
    uploader = same_size_worker(store, graph)
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")

    def album(title: str) -> tuple[str, Delivery]:
        album_id, (row,) = store.create_album(
            user.id, title, None, [f"{user.prefix}0.png"], destination=("album", "existing")
        )
        return album_id, Delivery(row.body, {}, False, row.message_id, "image.upload")

    _, x = album("X")
    y_id, y = album("Y")
    graph.plan("upload_photo", Fault(TIMED_OUT))  # Y's send: its answer lost, no photo
    retry = retried(y, decide(uploader.route(), y))
    past_in_flight_windows(store, y_id)
    assert decide(uploader.route(), x).outgoing == ()  # X's photo lands and is recorded
    assert decide(uploader.route(), retry).outgoing == ()
    (y_image,) = present(store.album(y_id)).images
    assert y_image.photo_id != graph.photos[0]["id"], "Y recorded X's photo"
    assert graph.calls["upload_photo"] == 3  # Y sent again: its first never landed


# -- the first wave: one decision per process -------------------------------------------------

REFUSED = GraphError(
    "(#200) This endpoint is deprecated", http_status=403, code=200, is_transient=False
)


def count_calls(monkeypatch: pytest.MonkeyPatch, store: Store, method: str) -> list[str]:
    """The album ids `store.method` was called with, in order, from any thread."""
    calls: list[str] = []
    real = getattr(store, method)

    def spy(album_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(album_id)
        return real(album_id, *args, **kwargs)

    monkeypatch.setattr(store, method, spy)
    return calls


@pytest.mark.parametrize("refused", [False, True], ids=["created", "refused"])
def test_a_first_wave_in_one_process_claims_its_album_once_however_many_images_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    """20 images taken at once in one uploader wait for the one creating their Facebook album
    (or learning that Facebook refuses it) rather than each claiming it in the store: on
    SQLite every claim queues on the one writer, ahead of the decision they wait for."""
    graph = FakeGraph()
    album_id, deliveries = new_album(store, 21)
    gate = threading.Event()
    graph.plan("create_album", Fault(REFUSED if refused else None, gate=gate))
    uploader = worker(store, graph)
    claims = count_calls(monkeypatch, store, "claim_fb_album")
    wave = deliveries[:20]
    fates: list[Fate] = []
    threads = [threading.Thread(target=lambda d=d: fates.append(run(uploader, d))) for d in wave]
    for thread in threads:
        thread.start()
    assert graph.entered["create_album"].wait(10)
    # Every image of the wave has taken its attempt before the decision is made.
    wait_for(lambda: _taken(store, album_id) == 20, timeout=10, what="the wave's 20 attempts")
    gate.set()
    for thread in threads:
        thread.join(30)
    assert [f.outgoing for f in fates] == [()] * 20
    assert claims == [album_id], f"{len(claims)} claims for one album in one process"
    # An image taken after the decision knows it too: no claim.
    assert run(uploader, deliveries[20]).outgoing == ()
    assert claims == [album_id]
    assert graph.calls["create_album"] == 1
    album = present(store.album(album_id))
    assert album.state == ("publishing" if refused else "done")
    if refused:
        assert {p["album_id"] for p in graph.photos} == {graph.page_id}
    else:
        assert_one_album_holds_every_photo(store, graph, album_id)


def _taken(store: Store, album_id: str) -> int:
    return sum(1 for i in present(store.album(album_id)).images if i.attempts >= 1)


# -- a refused create after another worker's was recorded ----------------------------------------


def test_a_refusal_after_another_worker_recorded_the_album_keeps_that_album(
    store: Store,
) -> None:
    """A worker's create is refused after another worker (its claim taken over) recorded the
    Facebook album: the album keeps that album, and the refusing worker uploads into it rather
    than switch to a post or remember one."""
    graph = FakeGraph()
    album_id, (delivery,) = new_album(store, 1)
    answer = threading.Event()
    graph.plan("create_album", Fault(REFUSED, gate=answer))
    fates: list[Fate] = []
    refused = threading.Thread(target=lambda: fates.append(run(worker(store, graph), delivery)))
    refused.start()
    assert graph.entered["create_album"].wait(10)
    recorded = store.set_fb_album(album_id, "album-recorded")  # the other worker's create
    graph.albums[recorded] = {"id": recorded, "name": "Trip", "created_time": "now"}
    answer.set()
    refused.join(10)
    assert [f.outgoing for f in fates] == [()]
    album = present(store.album(album_id))
    assert (album.destination, album.fb_album_id) == ("new_album", recorded)
    assert [p["album_id"] for p in graph.photos] == [recorded]
