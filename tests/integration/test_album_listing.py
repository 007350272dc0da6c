"""A user's albums a page at a time, on SQLite and PostgreSQL: the pages follow one another
with no album missed or shown twice (ties on the creation time too), and the reads use the
indexes that keep a page's cost apart from the user's history."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text, update

from shared.store import ImageState, Store
from shared.store.album_listing import newest_albums_query
from shared.store.tables import Album, Image

pytestmark = pytest.mark.integration


def _user_with_albums(store: Store, count: int, images: int = 2) -> tuple[int, list[str]]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    ids = [
        store.create_album(
            user.id, f"Trip {n}", None, [f"{user.prefix}{n}-{i}.png" for i in range(images)]
        )[0]
        for n in range(count)
    ]
    return user.id, ids


def _all_pages(store: Store, user_id: int, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        summaries, after = store.album_summaries(user_id, limit, after)
        pages.append([summary.album.id for summary in summaries])
        if after is None:
            return pages


def test_the_second_page_follows_the_first_with_no_gap_or_duplicate(store: Store) -> None:
    user_id, ids = _user_with_albums(store, 7)
    pages = _all_pages(store, user_id, 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [album for page in pages for album in page] == [
        album.id for album in store.albums(user_id)
    ]  # newest first, as the full list
    assert sorted(album for page in pages for album in page) == sorted(ids)


def test_albums_made_in_the_same_instant_are_each_listed_once(store: Store) -> None:
    user_id, ids = _user_with_albums(store, 5)
    with store.engine.begin() as connection:  # one creation time for all: ids break the ties
        connection.execute(
            update(Album)
            .where(Album.user_id == user_id)
            .values(created_at=text("'2026-01-01 00:00:00'"))
        )
    pages = _all_pages(store, user_id, 2)
    assert sorted(album for page in pages for album in page) == sorted(ids)
    assert [album for page in pages for album in page] == sorted(ids, reverse=True)


def test_a_page_holds_counts_and_the_cover_not_the_images(store: Store) -> None:
    user_id, (album_id,) = _user_with_albums(store, 1, images=3)
    first = store.album(album_id)
    assert first is not None
    store.record_uploaded(first.images[0].id, "p1")
    (summary,), after = store.album_summaries(user_id, 10)
    assert after is None and summary.album.images == ()
    assert summary.counts == {ImageState.UPLOADED: 1, ImageState.QUEUED: 2}
    assert summary.total == 3
    assert summary.cover_key == first.images[0].key


def test_an_album_page_reads_a_slice_of_its_photos(store: Store) -> None:
    user_id, (album_id,) = _user_with_albums(store, 1, images=7)
    summary = store.album_slice(album_id, user_id, 5, 5)
    assert summary is not None and summary.total == 7 and summary.first == 5
    assert [image.key.split("/")[-1] for image in summary.album.images] == ["0-5.png", "0-6.png"]
    assert store.album_slice(album_id, user_id + 1, 0, 5) is None  # another user's


def _plan(store: Store, statement: Any) -> str:
    sql = str(statement.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            # A test table is small enough for a scan to win; what matters is that an index
            # serves the read at all (with many albums the planner takes it).
            connection.execute(text("SET enable_seqscan = off"))
            rows = list(connection.execute(text(f"EXPLAIN {sql}")).scalars())
        else:
            rows = [row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
        return "\n".join(str(row) for row in rows)


def test_a_page_of_albums_is_read_by_its_index_without_a_sort(store: Store) -> None:
    user_id, _ = _user_with_albums(store, 3)
    (_, after) = store.album_summaries(user_id, 1)
    assert after is not None
    for cursor in (None, after):
        sqlite = store.engine.dialect.name == "sqlite"
        plan = _plan(store, newest_albums_query(sqlite, user_id, 51, cursor))
        assert "ix_albums_user_newest" in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_an_album_pages_photos_and_covers_use_the_position_index(store: Store) -> None:
    from sqlalchemy import select

    _user_with_albums(store, 1)
    plan = _plan(
        store,
        select(Image)
        .where(Image.album_id == "x", Image.position >= 50)
        .order_by(Image.position)
        .limit(50),
    )
    assert "ix_images_album_position" in plan, plan
