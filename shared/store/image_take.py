"""An image's start in one statement: the usual case of `Store.start_attempt`, as a single
`UPDATE ... RETURNING` on the image's row.

It takes the image only when nothing needs a decision: the message names the stored album and
object, the image has not ended, the delivery is not a stale duplicate (`fencing.superseded`),
no attempt may be in flight (`_busy_until`), the image holds its turn already, and neither its
Page nor the app is held for Facebook's usage. Otherwise it changes nothing and the caller
takes the long way (`start_attempt` and the checks before it), which says why.

It locks the image's row only, never the album's: the first wave of an album's images start
side by side instead of queueing for the album row, and (holding one lock) it cannot deadlock
with the transactions that lock the album first. The album's Facebook album is claimed apart
(`claim_fb_album`), by the images whose process does not know it yet.

A take that misses because the image has ended (a redelivery or a replay of an uploaded image,
bench row P7) is told apart by one read after it (`ENDED`), so that the duplicate is
acked without the long way's four transactions.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Update,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)

from shared.store.db_clock import utc_now, utc_now_plus
from shared.store.tables import TERMINAL, GraphHold, Image, ImageState


class Taken(NamedTuple):
    """What the attempt taken needs next, as the image's row holds it."""

    attempt: int
    caption: str
    first_attempt_at: datetime | None
    size: tuple[int, int] | None
    key: str

    @classmethod
    def of(cls, row: Any) -> Taken:
        size = (row.width, row.height) if row.width and row.height else None
        return cls(row.attempts, row.caption or "", row.first_attempt_at, size, row.key)


def take_statement(
    image_id: int,
    album_id: str,
    key: str,
    lease: timedelta,
    in_flight_window: timedelta,
    fence: int | None,
    held_scopes: Collection[str],
) -> tuple[Update, dict[str, Any]]:
    """The UPDATE that takes the image for a new attempt, returning `Taken`'s columns, and the
    parameters to run it with; it matches no row when anything needs `start_attempt`'s
    decision."""
    params: dict[str, Any] = {
        "take_image_id": image_id,
        "take_album_id": album_id,
        "take_key": key,
        "take_lease_s": lease.total_seconds(),
        "take_started_by_s": -in_flight_window.total_seconds(),
    }
    if fence is not None:
        params["take_fence"] = fence
    if held_scopes:
        params["take_held_scopes"] = list(held_scopes)
    return _take(fenced=fence is not None, held=bool(held_scopes)), params


@functools.cache
def _take(fenced: bool, held: bool) -> Update:
    """The take's statement, built once for each of its shapes, its values bound when it runs
    (`take_statement`'s parameters): building it and its cache key for every message was a
    third of the uploader's CPU on P7's path. Parameters are not named after columns, which an
    UPDATE keeps for its SET clause."""
    uploading = Image.state == ImageState.UPLOADING
    fence = bindparam("take_fence", type_=Integer()) if fenced else None
    conditions: list[ColumnElement[bool]] = [
        Image.id == bindparam("take_image_id", type_=Integer()),
        Image.album_id == bindparam("take_album_id", type_=String()),
        Image.key == bindparam("take_key", type_=String()),
        Image.state.not_in(TERMINAL),
        Image.unreleased.is_not(True),
        _not_busy(uploading),
    ]
    if fence is not None:  # fencing.superseded, in SQL
        conditions.append(
            or_(Image.attempts <= fence, and_(uploading, Image.attempt_fence == fence))
        )
    if held:
        scopes = bindparam("take_held_scopes", type_=String(), expanding=True)
        conditions.append(
            ~exists(
                select(GraphHold.scope).where(
                    GraphHold.scope.in_(scopes), GraphHold.until > utc_now()
                )
            )
        )
    return (
        update(Image)
        .where(*conditions)
        .values(
            state=ImageState.UPLOADING,
            next_attempt_at=None,
            in_doubt=False,
            attempts=Image.attempts + 1,
            attempt_started_at=utc_now(),
            lease_until=utc_now_plus(bindparam("take_lease_s", type_=Float())),
            attempt_fence=fence,
            first_attempt_at=func.coalesce(Image.first_attempt_at, utc_now()),
        )
        .returning(
            Image.attempts,
            Image.caption,
            Image.first_attempt_at,
            Image.width,
            Image.height,
            Image.key,
        )
    )


class Ended(NamedTuple):
    """The take missed because the image has ended, and the message names its stored album and
    object: a duplicate with nothing left to decide."""

    state: str


#: The image's state if it has ended and the message names its stored album and object (its
#: parameters `image_id`, `album_id` and `key`); no row otherwise (a mismatch, an unknown image
#: or one not ended: the long way says why). Built once: a miss reads it under SQLite's write
#: lock, which the other workers wait for.
ENDED: Select[str] = select(Image.state).where(
    Image.id == bindparam("image_id"),
    Image.album_id == bindparam("album_id"),
    Image.key == bindparam("key"),
    Image.state.in_(TERMINAL),
)


def _not_busy(uploading: ColumnElement[bool]) -> ColumnElement[bool]:
    """No earlier attempt may still run or reach Facebook (`repository._busy_until`): its
    window ends `take_started_by_s` (minus the in-flight window) from now."""
    running = or_(uploading, Image.in_doubt.is_(True))
    lease_over = or_(~uploading, Image.lease_until.is_(None), Image.lease_until <= utc_now())
    started_by = utc_now_plus(bindparam("take_started_by_s", type_=Float()))
    window_over = Image.attempt_started_at <= started_by
    return or_(~running, Image.attempt_started_at.is_(None), and_(window_over, lease_over))
