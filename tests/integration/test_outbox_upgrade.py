"""A store made by a version before the outbox counted refusals is upgraded in place."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from shared.store import Store

pytestmark = pytest.mark.integration


def new_rows(store):
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    _, rows = store.create_album(user.id, "t", None, [user.prefix + "a", user.prefix + "b"])
    return [row.id for row in rows]


def claimed(store):
    return {row.id for row in store.claim_unpublished(timedelta(0), timedelta(seconds=30))}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request, tmp_path):
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


def test_a_store_made_before_refusals_were_counted_is_upgraded_in_place(empty_store_url):
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
