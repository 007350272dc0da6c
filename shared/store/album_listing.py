"""Reading albums a page at a time: a user's albums newest first, and one album's photos.

The cost of a page must not grow with the user's history or the album's size: albums are read
by keyset (the last album shown, not an offset, so page 100 costs what page 1 does), over the
index `ix_albums_user_newest` (user_id, created_at, id); each album's counts come from one
grouped read over the page's albums, and a photo page reads its slice by
`ix_images_album_position` (album_id, position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from shared.store.tables import Album, Image
from shared.store.views import AlbumView, album_view


@dataclass(frozen=True)
class AlbumCursor:
    """Where a page of albums ends: the next page starts after this album (newest first).

    `created_at` is the album's creation time exactly as the store holds it: on SQLite its
    text (a datetime read back and bound again would print with other digits, and an album
    equal to the cursor would compare as older and show twice), on PostgreSQL its ISO form."""

    created_at: str
    album_id: str


@dataclass(frozen=True)
class AlbumSummary:
    """An album without its images: how many there are in each state, and the first one's key
    (the list's cover). `album.images` holds only the images a caller asked a slice of."""

    album: AlbumView
    counts: dict[str, int]
    total: int
    cover_key: str | None
    #: The position of `album.images[0]` in the album (a photo page's start).
    first: int = 0


def newest_albums(
    s: Session, user_id: int, limit: int, after: AlbumCursor | None
) -> tuple[list[AlbumSummary], AlbumCursor | None]:
    """Up to `limit` of the user's albums, newest first, after `after`; and the cursor of the
    next page (None: this is the last)."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    found = list(s.execute(newest_albums_query(sqlite, user_id, limit + 1, after)))
    more = len(found) > limit
    rows = [album for album, _ in found[:limit]]
    counts = _counts(s, [album.id for album in rows])
    covers = _covers(s, [album.id for album in rows])
    summaries = [
        _summary(album, (), counts.get(album.id, {}), covers.get(album.id)) for album in rows
    ]
    if not more:
        return summaries, None
    last, created = found[limit - 1]
    return summaries, AlbumCursor(created if sqlite else created.isoformat(), last.id)


def newest_albums_query(
    sqlite: bool, user_id: int, limit: int, after: AlbumCursor | None
) -> Select[tuple[Album, Any]]:
    """The read of a page of albums and each one's creation time as stored (apart, for tests
    to see which index it uses)."""
    # Read and compared as stored: a type change, not a function, so the index still serves.
    created: Any = type_coerce(Album.created_at, String) if sqlite else Album.created_at
    query = select(Album, created.label("stored_created_at")).where(Album.user_id == user_id)
    if after is not None:
        since: Any = after.created_at if sqlite else datetime.fromisoformat(after.created_at)
        # Ties on created_at are ordered by id, so no album falls between two pages.
        query = query.where(or_(created < since, and_(created == since, Album.id < after.album_id)))
    return query.order_by(Album.created_at.desc(), Album.id.desc()).limit(limit)


def album_slice(
    s: Session, album_id: str, user_id: int | None, first: int, count: int
) -> AlbumSummary | None:
    """The album with `count` of its images from position `first` on, its counts by state and
    its total; None if it does not exist or belongs to another user."""
    album = s.get(Album, album_id)
    if album is None or (user_id is not None and album.user_id != user_id):
        return None
    images = list(
        s.scalars(
            select(Image)
            .where(Image.album_id == album_id, Image.position >= first)
            .order_by(Image.position)
            .limit(count)
        )
    )
    counts = _counts(s, [album_id]).get(album_id, {})
    return _summary(album, images, counts, None, first)


def _summary(
    album: Album,
    images: Sequence[Image],
    counts: dict[str, int],
    cover_key: str | None,
    first: int = 0,
) -> AlbumSummary:
    return AlbumSummary(album_view(album, images), counts, sum(counts.values()), cover_key, first)


def _counts(s: Session, album_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    if not album_ids:
        return found
    for album_id, state, count in s.execute(
        select(Image.album_id, Image.state, func.count())
        .where(Image.album_id.in_(album_ids))
        .group_by(Image.album_id, Image.state)
    ):
        found.setdefault(album_id, {})[state] = count
    return found


def _covers(s: Session, album_ids: Sequence[str]) -> dict[str, str]:
    if not album_ids:
        return {}
    rows = s.execute(
        select(Image.album_id, Image.key).where(Image.album_id.in_(album_ids), Image.position == 0)
    )
    # A Row unpacks as a tuple (Result.tuples() is deprecated in SQLAlchemy 2.1).
    return dict(rows.all())
