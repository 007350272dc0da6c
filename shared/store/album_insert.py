"""A new album's rows in a few statements, whatever its size: the work the publish request
does in the store (issue 14's P1).

The images and their upload messages go in one multi-row INSERT each. Their RETURNING rows are
matched to what was inserted by a column of their own (an image's position, a message's id):
a multi-row INSERT does not promise to return rows in order, and asking SQLAlchemy for that
order (`sort_by_parameter_order`) makes it send one INSERT per row on SQLite. And the daily
quota reads one row: the sum of the image counts the day's albums recorded.

On PostgreSQL the rows go as one array per column, `INSERT ... SELECT * FROM unnest(...)`: the
statement is the same short text whatever the album's size. A VALUES list of 20 rows has 100
parameters, past what psycopg caches (50), so it parsed the query text again on every publish
(about 1 ms of the request's CPU for its two INSERTs, with SQLAlchemy's batching around it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, Insert, Table, Text, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session

from shared.contracts import fencing, messages, topology
from shared.contracts.outgoing import Outgoing
from shared.observability import log_context
from shared.store import daily_quota
from shared.store.tables import Album, Image, OutboxMessage

# The tables themselves, not the ORM classes: an ORM bulk INSERT sends one statement per set
# of columns its rows leave NULL (released images apart from waiting ones), and fills each row
# through the mapper; Core sends the rows as they are.
_IMAGES = cast(Table, Image.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


def upload_message(album_id: str, image_id: int, key: str, attempts: int) -> Outgoing:
    """The message that asks for an image to be uploaded, after its attempt number
    `attempts` (its fencing number: shared/contracts/fencing.py)."""
    body = messages.encode(
        messages.ImageUploadRequested(album_id=album_id, image_id=image_id, key=key)
    )
    return Outgoing(
        topology.WORK_EXCHANGE,
        topology.IMAGE_UPLOADS.routing_key,
        body,
        headers={fencing.FENCE_HEADER: attempts},
    )


def outbox_row(message: Outgoing) -> OutboxMessage:
    """The outbox row of a message, stamped with the trace of the request or handler."""
    return OutboxMessage(
        exchange=message.exchange,
        routing_key=message.routing_key,
        message_id=message.message_id,
        body=message.body,
        headers=log_context.stamp(message.headers),
    )


def insert_images(
    s: Session,
    album_id: str,
    keys: Sequence[str],
    captions: Sequence[str | None],
    window: int | None,
) -> list[tuple[int, str]]:
    """Insert the album's images in one statement: the first `window` released (None: all),
    the others waiting for their turn. Returns the released ones' (id, key), in album order."""
    released = len(keys) if window is None else min(window, len(keys))
    params = [
        {
            "album_id": album_id,
            "position": position,
            "key": key,
            "caption": (captions[position] if position < len(captions) else None) or None,
            "unreleased": True if position >= released else None,
        }
        for position, key in enumerate(keys)
    ]
    returned = _insert_rows(s, _IMAGES, params, ("position", "id"))
    ids: dict[int, int] = dict(returned.all())
    return [(ids[position], keys[position]) for position in range(released)]


def insert_upload_rows(
    s: Session, album_id: str, images: Sequence[tuple[int, str]]
) -> list[OutboxMessage]:
    """Insert the upload message of each (id, key) of a new album's images in one statement;
    returns the outbox rows, ids set, in the same order."""
    if not images:
        return []
    rows = [outbox_row(upload_message(album_id, image_id, key, 0)) for image_id, key in images]
    params = [
        {
            "exchange": row.exchange,
            "routing_key": row.routing_key,
            "message_id": row.message_id,
            "body": row.body,
            "headers": row.headers,
        }
        for row in rows
    ]
    returned = _insert_rows(s, _OUTBOX, params, ("message_id", "id"))
    ids: dict[str, int] = dict(returned.all())
    for row in rows:
        row.id = ids[row.message_id]
    return rows


def _insert_rows(
    s: Session, table: Table, params: Sequence[Mapping[str, Any]], returning: tuple[str, str]
) -> Result[Any, Any]:
    """Insert `params` (rows with the same columns) in one statement, returning the pair
    `returning` of each row."""
    if s.get_bind().dialect.name != "postgresql":
        statement = insert(table).returning(*(table.c[c] for c in returning))
        return s.execute(statement, params)
    columns = tuple(params[0])
    arrays = {f"rows_{c}": _column_array(table, c, params) for c in columns}
    unnested = _unnest_insert(table, columns, returning)
    return s.execute(unnested, arrays)


@functools.cache
def _unnest_insert(table: Table, columns: tuple[str, ...], returning: tuple[str, ...]) -> Insert:
    """INSERT ... SELECT * FROM unnest(one array per column): built once per shape."""
    # JSON goes as its text (an array of json is no type psycopg adapts from dicts), cast back.
    arrays = [
        bindparam(f"rows_{c}", type_=ARRAY(Text() if _is_json(table, c) else table.c[c].type))
        for c in columns
    ]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived()
    selected: list[ColumnElement[Any]] = [
        rows.c[c].cast(JSON) if _is_json(table, c) else rows.c[c] for c in columns
    ]
    return (
        insert(table)
        .from_select(list(columns), select(*selected))
        .returning(*(table.c[c] for c in returning))
    )


def _is_json(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, JSON)


def _column_array(table: Table, column: str, params: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The column's values of every row, JSON as its text (`_unnest_insert` casts it back)."""
    if not _is_json(table, column):
        return [row[column] for row in params]
    return [None if row[column] is None else json.dumps(row[column]) for row in params]


def images_of_the_day(s: Session, user_id: int, now: datetime, besides: str) -> int:
    """How many images the user's albums of the last 24 hours hold, album `besides` left out
    (the one being recorded), read as one row: each album's recorded count (an album from
    before the count: its images counted)."""
    counted = func.coalesce(
        Album.image_count,
        select(func.count(Image.id))
        .where(Image.album_id == Album.id)
        .correlate(Album)
        .scalar_subquery(),
    )
    used = s.scalar(
        select(func.coalesce(func.sum(counted), 0)).where(
            Album.user_id == user_id,
            Album.created_at > now - daily_quota.WINDOW,
            Album.id != besides,
        )
    )
    return int(used or 0)
