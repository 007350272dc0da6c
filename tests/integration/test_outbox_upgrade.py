"""A store made by a version before the outbox counted refusals is upgraded in place."""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from shared.contracts import messages
from shared.store import Store
from tests.integration.helpers import upload_of
from tests.present import present

pytestmark = pytest.mark.integration


def new_rows(store: Store) -> list[int]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    _, rows = store.create_album(user.id, "t", None, [user.prefix + "a", user.prefix + "b"])
    return [row.id for row in rows]


def claimed(store: Store) -> set[int]:
    return {row.id for row in store.claim_unpublished(timedelta(0), timedelta(seconds=30))}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL with no tables yet (on PostgreSQL, a schema of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"old_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_a_store_made_before_refusals_were_counted_is_upgraded_in_place(
    empty_store_url: str,
) -> None:
    old = Store(empty_store_url)
    old.create_schema()
    ids = new_rows(old)
    with old.engine.begin() as connection:  # the outbox as the older version made it
        for column in ("attempts", "next_attempt_at", "last_error"):
            connection.execute(text(f"ALTER TABLE outbox DROP COLUMN {column}"))
    old.dispose()

    store = Store(empty_store_url)
    try:
        store.create_schema()
        assert set(ids) == claimed(store)  # its unpublished rows are relayed as before
        (retry,) = store.record_refused({ids[0]: "refused"})
        assert retry.attempts == 1
    finally:
        store.dispose()


def test_a_store_made_before_turns_is_upgraded_and_its_images_count_as_released(
    empty_store_url: str,
) -> None:
    old = Store(empty_store_url)
    old.create_schema()
    user, _ = old.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, _ = old.create_album(user.id, "t", None, [user.prefix + k for k in "abc"])
    with old.engine.begin() as connection:  # the tables as the older version made them
        connection.execute(text("DROP INDEX ix_images_waiting_turn"))
        connection.execute(text("ALTER TABLE images DROP COLUMN unreleased"))
        connection.execute(text("ALTER TABLE albums DROP COLUMN release_window"))
    old.dispose()

    store = Store(empty_store_url)
    try:
        store.create_schema()
        assert "ix_images_waiting_turn" in {
            index["name"] for index in inspect(store.engine).get_indexes("images")
        }
        ids = [image.id for image in present(store.album(album_id)).images]
        # Its images all had their messages: none is held back, and none is sent twice.
        requeued = store.requeue_lost(timedelta(0), queue_empty=True)
        assert sorted(upload_of(row.body).image_id for row in requeued) == ids
        for image_id in ids:
            store.start_attempt(image_id)
            assert not [
                r
                for r in store.record_uploaded(image_id, f"p{image_id}")
                if isinstance(messages.decode(r.body), messages.ImageUploadRequested)
            ]
        assert present(store.album(album_id)).state == "done"
    finally:
        store.dispose()


def test_a_store_made_before_sends_were_recorded_takes_every_attempt_as_maybe_sent(
    empty_store_url: str,
) -> None:
    """Its attempts may have sent a photo, unrecorded: each is in the album's ledger (its retry
    reads the album back, and its look-alikes see it as a rival), not one taken as unsent."""
    old = Store(empty_store_url)
    old.create_schema()
    user, _ = old.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, _ = old.create_album(user.id, "t", None, [user.prefix + k for k in "abc"])
    attempted, recorded, untried = (i.id for i in present(old.album(album_id)).images)
    for image_id in (attempted, recorded):
        old.start_attempt(image_id)
    old.record_uploaded(recorded, "photo-1")
    with old.engine.begin() as connection:  # the images as the older version made them
        connection.execute(text("ALTER TABLE images DROP COLUMN sent_at"))
    old.dispose()

    store = Store(empty_store_url)
    try:
        store.create_schema()
        ledger = store.album_photo_ledger(album_id, timedelta(minutes=2))
        assert [u.image_id for u in ledger.unrecorded] == [attempted]
        assert ledger.claimed == ["photo-1"] and not ledger.began_sending(untried)
        store.start_attempt(untried)  # attempted, not sent
        store.create_schema()  # a later start assumes nothing more
        assert not store.album_photo_ledger(album_id, timedelta(minutes=2)).began_sending(untried)
    finally:
        store.dispose()
