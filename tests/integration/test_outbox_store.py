"""The outbox's rows in the store, on SQLite and PostgreSQL: claims, refusals and their
backoff, all timed by the database's clock (the relays' hosts may disagree with it)."""

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.store import OutboxMessage, Store, tables
from shared.store.db_clock import utc_now
from shared.store.outbox_backoff import refusal_backoff
from tests.present import present

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)


@pytest.fixture(autouse=True)
def published_around(store: Store) -> Iterator[None]:
    """The session's PostgreSQL database is shared by the tests: rows other modules left
    unpublished would fill a claim (500 rows at most) before this test's rows, and this test's
    rows must not be left waiting or leased for the tests after it (the relay tests count what
    is unpublished)."""
    _publish_every_row(store)
    yield
    _publish_every_row(store)


def _publish_every_row(store: Store) -> None:
    with Session(store.engine) as session, session.begin():
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .values(published_at=datetime(2000, 1, 1))
        )


def new_rows(store: Store, n: int = 2) -> list[int]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    _, rows = store.create_album(user.id, "t", None, [f"{user.prefix}{i}" for i in range(n)])
    return [row.id for row in rows]


def claimed(store: Store, grace: timedelta = timedelta(0), lease: timedelta = LEASE) -> set[int]:
    return {row.id for row in store.claim_unpublished(grace, lease)}


def database_now(store: Store) -> datetime:
    with Session(store.engine) as session:
        now: datetime | None = session.scalar(select(utc_now()))
        return present(now)


def host_clock_off_by(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """This host's clock runs `offset` away from the database's (and from other hosts')."""

    class Skewed(datetime):
        @classmethod
        # A plain datetime, as the real now() gives its callers (typeshed says Self).
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + offset

    monkeypatch.setattr(tables, "datetime", Skewed)


def test_a_refused_row_waits_out_its_backoff_then_is_claimed_again(store: Store) -> None:
    refused, other = new_rows(store)
    assert {refused, other} <= claimed(store)
    retries = store.record_refused({refused: "message m reached no queue"})
    store.release_outbox_claims([other])
    assert [(r.id, r.attempts) for r in retries] == [(refused, 1)]
    mine = claimed(store) & {refused, other}
    assert mine == {other}  # handed back at once; the refused one backs off
    with Session(store.engine) as session, session.begin():
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == refused)
            .values(next_attempt_at=retries[0].next_attempt_at - timedelta(hours=1))
        )
    assert refused in claimed(store)


def test_each_refusal_counts_keeps_its_error_and_doubles_the_wait(store: Store) -> None:
    (row_id,) = new_rows(store, 1)
    waits = []
    for attempt in (1, 2, 3):
        claimed(store)  # leased (or not: the refusal applies either way)
        before = database_now(store)
        (retry,) = store.record_refused({row_id: f"refused #{attempt}"})
        assert retry.attempts == attempt
        assert retry.last_error == f"refused #{attempt}"
        waits.append(retry.next_attempt_at - before)
    for attempt, wait in enumerate(waits, 1):
        # Measured from the database's clock, give or take the transaction's own time.
        assert refusal_backoff(attempt) <= wait < refusal_backoff(attempt) + timedelta(seconds=2)
    assert store.unpublished_count() >= 1  # never dropped


def test_a_lease_taken_on_a_host_whose_clock_runs_ahead_ends_on_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = set(new_rows(store))
    with monkeypatch.context() as patch:
        host_clock_off_by(patch, timedelta(hours=1))
        assert ids <= claimed(store, lease=timedelta(seconds=1))  # then that relay died
    time.sleep(1.5)
    # Another relay, on a host with the right time: the dead one's lease is over.
    assert ids <= claimed(store)


def test_rows_written_on_a_host_whose_clock_runs_behind_still_get_their_grace(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        host_clock_off_by(patch, -timedelta(hours=1))
        ids = set(new_rows(store))
    # The request that wrote them is publishing them: the relay leaves them alone for now.
    assert not ids & claimed(store, grace=timedelta(seconds=30))
