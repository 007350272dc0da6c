"""The notifier's claims in the store, on SQLite and PostgreSQL: one sender per settle at a
time, timed by the database's clock, and fenced so a sender that lost its claim cannot touch the
next one's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from shared import store as store_module
from shared.store import Store, repository
from shared.store.tables import Notification
from tests.present import present

from .store_blips import age_notifications

pytestmark = pytest.mark.integration

LEASE = timedelta(minutes=2)


def new_album(store: Store) -> str:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, _ = store.create_album(user.id, "Trip", None, [f"{user.prefix}a.png"])
    return album_id


def test_a_settle_is_mailed_once(store: Store) -> None:
    album_id = new_album(store)
    first = store.claim_notification(album_id, 1, LEASE)
    assert first.state == store_module.ClaimVerdict.SEND and first.claim_id
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.BUSY
    assert store.mark_notification_sent(album_id, 1, present(first.claim_id))
    assert store.mark_notification_sent(album_id, 1, present(first.claim_id))  # again: harmless
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.SENT
    # A claim given up (its mail not sent) can be taken again at once, by a new claim id.
    second = store.claim_notification(album_id, 2, LEASE)
    assert store.release_notification(album_id, 2, present(second.claim_id))
    third = store.claim_notification(album_id, 2, LEASE)
    assert third.state == store_module.ClaimVerdict.SEND and third.claim_id != second.claim_id


def test_a_claim_lasts_by_the_database_clock_not_the_senders(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notifier on a host whose clock runs an hour ahead must still see a fresh claim."""
    album_id = new_album(store)
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.SEND

    def an_hour_ahead() -> datetime:
        return datetime.utcnow() + timedelta(hours=1)  # noqa: DTZ003 - naive UTC, as stored

    monkeypatch.setattr(repository, "utcnow", an_hour_ahead)
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.BUSY


def test_a_sender_whose_claim_lapsed_cannot_mark_or_release_the_next_claim(store: Store) -> None:
    album_id = new_album(store)
    stale = store.claim_notification(album_id, 1, LEASE)
    age_notifications(store)
    current = store.claim_notification(album_id, 1, LEASE)
    assert current.state == store_module.ClaimVerdict.SEND and current.claim_id != stale.claim_id

    assert not store.release_notification(album_id, 1, present(stale.claim_id))
    assert not store.mark_notification_sent(album_id, 1, present(stale.claim_id))
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.BUSY

    assert store.mark_notification_sent(album_id, 1, present(current.claim_id))
    assert not store.release_notification(album_id, 1, present(current.claim_id))  # sent: stays so
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.SENT


def test_a_claim_taken_before_claims_had_ids_can_lapse_and_be_taken(store: Store) -> None:
    """A store upgraded in place keeps its claims; they have no id, so nobody holds them."""
    album_id = new_album(store)
    store.claim_notification(album_id, 1, LEASE)
    with store.engine.begin() as connection:
        connection.execute(update(Notification).values(claim_id=None))
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.BUSY
    age_notifications(store)
    assert store.claim_notification(album_id, 1, LEASE).state == store_module.ClaimVerdict.SEND
