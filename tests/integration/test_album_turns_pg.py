"""The turns of tests/unit/test_album_turns.py on PostgreSQL (its row locks, READ COMMITTED),
and images of one album ending at once: each releases its own next image, so the album's
window is never exceeded."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.store import Store
from tests.unit.test_album_turns import *  # noqa: F403 - the same tests, on PostgreSQL
from tests.unit.test_album_turns import publish, uploads

pytestmark = pytest.mark.integration


# Overrides the star-imported fixture of the same name: the same tests, on PostgreSQL.
@pytest.fixture  # type: ignore[no-redef]
def store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    store.create_schema()
    yield store
    store.dispose()


def test_images_ending_at_once_release_one_next_image_each(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        album_id, ids, rows = publish(store, 30, window=10)
        for image_id in uploads(rows):
            store.start_attempt(image_id)
        released: list[int] = []
        barrier = threading.Barrier(10)

        def end(image_id: int) -> None:
            barrier.wait()
            released.extend(uploads(store.record_uploaded(image_id, f"p{image_id}")))

        threads = [threading.Thread(target=end, args=(i,)) for i in ids[:10]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(released) == ids[10:20]
    finally:
        store.dispose()
