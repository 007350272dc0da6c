"""The uploader's ledger on SQLite and PostgreSQL: times from the database's clock, one attempt
at a time (a fencing number), in-doubt attempts keep their window, lost and stuck images are
found from the store alone, and the settle does not depend on the server's default isolation."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import update

from shared.contracts import fencing
from shared.contracts.messages import ImageUploadRequested, decode
from shared.store import OutboxMessage, Store
from shared.store import repository as repository_module
from shared.store.tables import Image, utcnow
from tests.present import present

from .store_blips import age_image

pytestmark = pytest.mark.integration

WINDOW = timedelta(seconds=60)


def new_album(store: Store, n: int) -> tuple[str, list[int]]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Trip", None, [f"{user.prefix}{i}.png" for i in range(n)]
    )
    return album_id, [image.id for image in present(store.album(album_id)).images]


def mine(rows: list[OutboxMessage], album_id: str) -> list[int]:
    """The image ids of this album's upload requests among `rows` (the PostgreSQL database is
    shared by the session's tests: another test's rows, of any kind, may be claimed too)."""
    messages = (decode(row.body) for row in rows)
    return sorted(
        m.image_id
        for m in messages
        if isinstance(m, ImageUploadRequested) and m.album_id == album_id
    )


# -- case 9: the database's clock, and a fencing number per attempt ----------------------------


def test_a_host_whose_clock_runs_ahead_does_not_take_an_image_still_in_flight(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (image,) = new_album(store, 1)
    assert store.start_attempt(image, timedelta(seconds=30), WINDOW).attempt == 1
    ahead = utcnow() + timedelta(minutes=3)
    monkeypatch.setattr(repository_module, "utcnow", lambda: ahead)
    busy = store.start_attempt(image, timedelta(seconds=30), WINDOW)
    assert busy.attempt is None and 50 < busy.busy_for <= 60


def test_a_stalled_attempt_cannot_clear_a_newer_attempts_lease_or_state(store: Store) -> None:
    _, (image,) = new_album(store, 1)
    store.start_attempt(image, timedelta(seconds=30))
    age_image(store, image)
    assert store.start_attempt(image, timedelta(seconds=30)).attempt == 2
    # Attempt 1 wakes up: its lease renewal, retry or failure no longer apply.
    store.renew_leases({image: 1}, timedelta(0))
    assert store.start_attempt(image, timedelta(seconds=30)).attempt is None
    store.record_retrying(image, "5xx", 500, timedelta(seconds=5), attempt=1)
    assert store.record_failed(image, "refused", 324, attempt=1) == []
    assert present(store.image(image)).state == "uploading"
    store.record_retrying(image, "5xx", 500, timedelta(seconds=5), attempt=2)
    assert present(store.image(image)).state == "retrying"


def test_a_wait_before_any_attempt_shows_on_a_waiting_image_never_on_an_uploading_one(
    store: Store,
) -> None:
    """A copy held back for the Page's usage took no attempt: its wait is shown on an image
    that waits, but must not clear the lease of an attempt uploading it meanwhile."""
    _, (waiting, taken) = new_album(store, 2)
    store.record_retrying(waiting, "usage 95%", None, timedelta(seconds=60), waiting_only=True)
    assert present(store.image(waiting)).state == "retrying"
    assert store.start_attempt(taken, timedelta(seconds=30)).attempt == 1
    store.record_retrying(taken, "usage 95%", None, timedelta(seconds=60), waiting_only=True)
    assert present(store.image(taken)).state == "uploading"
    assert store.start_attempt(taken, timedelta(seconds=30)).attempt is None  # lease kept


def test_a_stale_attempts_photo_is_recorded_and_a_second_photo_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    album_id, (image, other) = new_album(store, 2)
    store.start_attempt(image)
    age_image(store, image)
    store.start_attempt(image)
    # The stalled attempt 1 did send its photo: that is the image's photo, whoever is on it.
    store.record_uploaded(image, "p1", attempt=1)
    assert (present(store.image(image)).state, present(store.image(image)).photo_id) == (
        "uploaded",
        "p1",
    )
    with caplog.at_level(logging.ERROR):
        assert store.record_uploaded(image, "p2", attempt=2) == []
    assert present(store.image(image)).photo_id == "p1"
    assert any(
        "p2" in r.getMessage() and "p1" in r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
    )


def test_a_stale_attempts_photo_for_an_image_that_failed_meanwhile_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    _, (image,) = new_album(store, 1)
    store.start_attempt(image)
    age_image(store, image)
    store.start_attempt(image)
    store.record_failed(image, "not found in the bucket", 404, attempt=2)
    with caplog.at_level(logging.ERROR):
        store.record_uploaded(image, "p1", attempt=1)
    assert any("p1" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_the_relay_takes_rows_by_the_databases_clock(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    album_id, _ = new_album(store, 1)
    ahead = utcnow() + timedelta(minutes=3)
    monkeypatch.setattr(repository_module, "utcnow", lambda: ahead)
    # Written a moment ago: still the writer's to publish, whatever this host's clock says.
    claimed = store.claim_unpublished(timedelta(seconds=30), timedelta(seconds=30))
    assert mine(claimed, album_id) == []


# -- case 10: a stale duplicate starts no second retry chain -----------------------------------


def test_a_copy_from_an_older_attempt_is_a_stale_duplicate(store: Store) -> None:
    _, (image,) = new_album(store, 1)
    assert store.start_attempt(image, fence=0).attempt == 1
    store.record_retrying(image, "5xx", 500, timedelta(0), attempt=1)
    # Two copies of attempt 1's retry (a duplicate delivery): the first takes attempt 2...
    assert store.start_attempt(image, fence=1).attempt == 2
    store.record_retrying(image, "5xx", 500, timedelta(0), attempt=2)
    # ...the second is older than the image's attempt: acked, no chain of its own.
    stale = store.start_attempt(image, fence=1)
    assert (stale.attempt, stale.busy_for, stale.stale) == (None, 0.0, True)
    assert store.start_attempt(image, fence=2).attempt == 3


def test_a_copy_of_an_attempt_that_recorded_no_outcome_is_not_stale(store: Store) -> None:
    _, (image,) = new_album(store, 1)
    assert store.start_attempt(image, fence=0).attempt == 1
    # The store went away mid-attempt: the runtime sent the message again through a delay
    # tier as it came (fence 0). It is the image's only message: it must be taken.
    age_image(store, image)
    assert store.start_attempt(image, fence=0).attempt == 2
    # Attempt 2, taken by that copy, dies too (its uploader was killed): the copy comes back.
    age_image(store, image)
    assert store.start_attempt(image, fence=0).attempt == 3
    # Once an attempt recorded its outcome, that attempt's own copy is the chain.
    store.record_retrying(image, "5xx", 500, timedelta(0), attempt=3)
    assert store.start_attempt(image, fence=0).stale


# -- case 2: an attempt in doubt keeps its in-flight window ------------------------------------


def test_an_attempt_in_doubt_keeps_its_in_flight_window(store: Store) -> None:
    _, (doubtful, refused) = new_album(store, 2)
    for image in (doubtful, refused):
        store.start_attempt(image, timedelta(seconds=30), WINDOW)
    store.record_retrying(doubtful, "read timeout", None, timedelta(0), attempt=1, in_doubt=True)
    store.record_retrying(refused, "throttled", 613, timedelta(0), attempt=1)
    busy = store.start_attempt(doubtful, timedelta(seconds=30), WINDOW)
    assert busy.attempt is None and 55 < busy.busy_for <= 60
    assert store.start_attempt(refused, timedelta(seconds=30), WINDOW).attempt == 2


# -- case 1 and 10: lost and stuck images, from the store alone --------------------------------


def test_a_stuck_uploading_image_is_sent_again_once_its_window_passed(store: Store) -> None:
    album_id, (stuck, alive) = new_album(store, 2)
    for image in (stuck, alive):
        store.start_attempt(image, timedelta(seconds=30), WINDOW)
    quiet = timedelta(seconds=1)
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == []
    age_image(store, stuck)  # its uploader died: lease and window long gone
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == [stuck]
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == []


def test_an_attempt_in_doubt_is_not_lost_before_its_window_passed(store: Store) -> None:
    album_id, (image,) = new_album(store, 1)
    store.start_attempt(image, timedelta(seconds=30), WINDOW)
    store.record_retrying(image, "read timeout", None, timedelta(0), attempt=1, in_doubt=True)
    # Its copies go round the wait tiers (busy) meanwhile, without touching the image.
    quiet = timedelta(milliseconds=-1)
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == []
    age_image(store, image)
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == [image]


def test_a_steady_backlog_is_not_sent_again_but_what_it_passed_is(store: Store) -> None:
    album_id, (lost, *backlog) = new_album(store, 6)
    long_ago = utcnow() - timedelta(minutes=30)
    with store.engine.begin() as connection:
        connection.execute(
            update(Image)
            .where(Image.album_id == album_id)
            .values(queued_at=long_ago, updated_at=long_ago)
        )
        connection.execute(
            update(Image)
            .where(Image.id.in_(backlog[3:]))
            .values(queued_at=long_ago + timedelta(minutes=10))
        )
    quiet = timedelta(minutes=2)
    # The uploader is busy with what was queued before them; they have waited 30 min.
    other_album, (busy,) = new_album(store, 1)
    with store.engine.begin() as connection:
        # (On PostgreSQL the database is the session's: other tests' attempts are long past.)
        connection.execute(
            update(Image)
            .where(Image.album_id.not_in((album_id, other_album)))
            .values(attempt_started_at=long_ago - timedelta(hours=1))
        )
        connection.execute(
            update(Image).where(Image.id == busy).values(queued_at=long_ago - timedelta(minutes=1))
        )
    store.start_attempt(busy)
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == []
    # The queue reached a message written 10 min after `lost`'s: lost's message is gone.
    store.start_attempt(backlog[3])
    assert mine(store.requeue_lost(quiet, WINDOW, limit=10_000), album_id) == [lost, *backlog[:3]]


# -- case 8: the settle under REPEATABLE READ --------------------------------------------------


def test_the_last_two_images_settle_the_album_once_under_repeatable_read(postgres_url: str) -> None:
    options = quote("-c default_transaction_isolation=repeatable\\ read")
    store = Store(f"{postgres_url}?options={options}")
    store.create_schema()
    try:
        for _ in range(5):
            album_id, images = new_album(store, 2)
            for image in images:
                store.start_attempt(image)
            settled: list[object] = []
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=_end_together, args=(store, image, barrier, settled))
                for image in images
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(settled) == 1 and present(store.album(album_id)).state == "done"
    finally:
        store.dispose()


def _end_together(
    store: Store, image: int, barrier: threading.Barrier, settled: list[OutboxMessage]
) -> None:
    barrier.wait()
    settled.extend(store.record_uploaded(image, f"p{image}"))


def test_the_fence_travels_in_a_header() -> None:
    assert fencing.fence_of({fencing.FENCE_HEADER: 3}) == 3
    assert fencing.fence_of({}) is None and fencing.fence_of({fencing.FENCE_HEADER: "x"}) is None
