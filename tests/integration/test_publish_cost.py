"""What one POST /api/albums costs the store, counted rather than timed (issue 14's P1: the
request's own work against raw pika's 20 confirmed publishes), on SQLite and PostgreSQL.

Counted on the request's own thread only, so the outbox relay's rounds (another thread, every
2 s) never land in a count: the statements sent, the transactions begun, and the work the
daily quota's read does as the user's history grows (rows the database hands back, on SQLite
the virtual machine's steps too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.delivery.outbox import DEFAULT_GRACE
from shared.store import Store
from tests.conftest import fresh_postgres_database

from .helpers import wait_for
from .store_tally import Tally, tally
from .test_api_publish import Api, api_on

pytestmark = pytest.mark.integration


def publish(api: Api, images: int) -> Tally:
    with tally(api.store) as counted:
        response = api.post(api.album_body(images))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["queued"] is True
    return counted


@pytest.fixture(params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path: Path, amqp_url: str, work_queue: str
) -> Iterator[Api]:
    """The API on a store of its own: the history made here (a user with dozens of albums)
    would change the plans PostgreSQL picks for the session's other tests."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/albums.db"
        else:
            url = stack.enter_context(fresh_postgres_database())
        store = Store(url)
        stack.callback(store.dispose)
        # The bench's settings (bench/system.py): a window of 20, a quota far above the history.
        api = stack.enter_context(api_on(store, amqp_url, album_window=20, images_per_day=100_000))
        publish(api, 1)  # the first request builds the publisher and the pools
        yield api
        # The rows marked before the database goes: no mark still holds a connection then.
        wait_for(lambda: api.store.unpublished_count() == 0, timeout=10, what="the marks")


def test_a_publish_sends_as_many_statements_for_200_images_as_for_20(api: Api) -> None:
    """The images and their outbox rows go in one multi-row statement each, not one per row."""
    twenty = publish(api, 20)
    two_hundred = publish(api, 200)
    assert len(two_hundred.statements) == len(twenty.statements), two_hundred.statements
    # Who asks, the Page, the album, the clock, the quota, the images, their messages, the
    # mark (and PostgreSQL's lock on the user's row); SQLite's BEGINs are statements too.
    assert len([s for s in twenty.statements if not s.startswith("BEGIN")]) <= 9


def test_a_publish_waits_for_two_transactions_and_its_rows_are_marked_after(api: Api) -> None:
    """The request's own transactions: who is asking (the bearer token), then the album with
    its images and outbox rows, the Page it goes to read in the same transaction. Marking the
    confirmed rows published is another thread's, after the answer, well within the relay's
    grace (so the relay sends no copies)."""
    assert publish(api, 20).transactions == 2
    assert DEFAULT_GRACE.total_seconds() > 3
    wait_for(lambda: api.store.unpublished_count() == 0, timeout=3, what="the rows marked")


def test_the_daily_quota_read_does_not_grow_with_the_albums_of_the_day(api: Api) -> None:
    """The quota sums the albums' recorded image counts in one row; the images of the last 24
    hours are not read one album at a time."""
    _history(api, 5)
    few = publish(api, 20)
    _history(api, 150)
    many = publish(api, 20)
    assert many.rows_read == few.rows_read, (few.rows_read, many.rows_read)
    if api.store.engine.dialect.name == "sqlite":
        # Summing 150 more albums' counts is a walk of their index entries (about half the
        # steps of the rest of the publish); counting their 3,000 images was 8 times them.
        assert many.vm_steps <= few.vm_steps * 2, (few.vm_steps, many.vm_steps)


def _history(api: Api, albums: int) -> None:
    """Albums of 20 images for the user, their messages marked sent (the API's relay leaves
    them alone)."""
    keys = [f"{api.user.prefix}{n}.png" for n in range(20)]
    for _ in range(albums):
        _, rows = api.store.create_album(api.user.id, "history", None, keys)
        api.store.mark_published([row.id for row in rows])
