"""The one-statement start (`Store.take_image_unless_ended`, shared/store/image_take.py)
against the long way (`Store.start_attempt`), state by state: a take must never start an
attempt the long way would refuse (an ended, busy, in-doubt or stale image: a photo sent
twice), and in the usual states it must take what the long way takes (else every image pays the
long way). Where the take is stricter by design (an image still waiting for its album's turn, a
message naming another album or object), it changes nothing and the handler takes the long way,
which says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from shared.store import Ended, ImageState, Store
from shared.store.image_take import Taken
from shared.store.tables import Image
from tests.present import present
from tests.unit.stores import new_store

LEASE = timedelta(seconds=30)
WINDOW = timedelta(seconds=60)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


#: (name, the image's columns set before the start, the delivery's fence, the long way takes)
STATES: list[tuple[str, dict[str, Any], int | None, bool]] = [
    ("queued, first delivery", {}, None, True),
    ("queued, fenced first delivery", {}, 0, True),
    ("retrying, its retry copy", {"state": ImageState.RETRYING, "attempts": 1}, 1, True),
    ("uploaded", {"state": ImageState.UPLOADED, "attempts": 1, "photo_id": "p"}, None, False),
    ("failed", {"state": ImageState.FAILED, "attempts": 3}, None, False),
    (
        "uploading, lease held, just started",
        {
            "state": ImageState.UPLOADING,
            "attempts": 1,
            "attempt_started_at": _now(),
            "lease_until": _now() + LEASE,
        },
        None,
        False,
    ),
    (
        "uploading, lease over, started long ago",
        {
            "state": ImageState.UPLOADING,
            "attempts": 1,
            "attempt_started_at": LONG_AGO,
            "lease_until": LONG_AGO,
        },
        None,
        True,
    ),
    (
        "retrying in doubt, just started",
        {
            "state": ImageState.RETRYING,
            "attempts": 1,
            "in_doubt": True,
            "attempt_started_at": _now(),
        },
        None,
        False,
    ),
    (
        "retrying, a stale copy of attempt 1",
        {"state": ImageState.RETRYING, "attempts": 3},
        1,
        False,
    ),
]


def _image(store: Store, columns: dict[str, Any]) -> tuple[int, str, str]:
    user, _ = store.create_user("take@example.com")
    album_id, _rows = store.create_album(user.id, "Take", None, [f"{user.prefix}a.png"], window=8)
    album = store.album(album_id)
    assert album is not None
    image = album.images[0]
    if columns:
        with store.engine.begin() as connection:
            connection.execute(update(Image).where(Image.id == image.id).values(**columns))
    return image.id, album_id, image.key


def _take(store: Store, image: tuple[int, str, str], fence: int | None) -> bool:
    image_id, album_id, key = image
    taken = store.take_image_unless_ended(image_id, album_id, key, LEASE, WINDOW, fence)
    return isinstance(taken, Taken)


@pytest.mark.parametrize(("name", "columns", "fence", "takes"), STATES, ids=[s[0] for s in STATES])
def test_the_take_and_the_long_way_agree(
    name: str, columns: dict[str, Any], fence: int | None, takes: bool
) -> None:
    """Each way on a store of its own. Where the take does not start an attempt, it says
    `Ended` for an uploaded or failed image (the uploader acks the duplicate) and None for the
    rest (the long way decides)."""
    store = new_store()
    long_way = store.start_attempt(_image(store, columns)[0], LEASE, WINDOW, fence=fence)
    store = new_store()
    taken = store.take_image_unless_ended(*_image(store, columns), LEASE, WINDOW, fence)
    starts = {"long way": long_way.attempt is not None, "take": isinstance(taken, Taken)}
    assert starts == {"long way": takes, "take": takes}, name
    if not takes:
        ended = columns.get("state") in (ImageState.UPLOADED, ImageState.FAILED)
        assert taken == (Ended(columns["state"]) if ended else None), name


def test_a_take_that_misses_changes_nothing() -> None:
    store = new_store()
    image = _image(store, {"state": ImageState.RETRYING, "attempts": 3})
    before = store.album(image[1])
    assert not _take(store, image, 1)
    assert store.album(image[1]) == before


def test_the_take_is_stricter_where_the_handler_must_explain() -> None:
    """A message naming another album or object, or an image still waiting for its turn:
    no take (the long way dead-letters the forged message, or waits for the turn)."""
    store = new_store()
    image_id, album_id, key = _image(store, {})
    assert store.take_image_unless_ended(image_id, "another-album", key, LEASE, WINDOW) is None
    assert (
        store.take_image_unless_ended(image_id, album_id, "users/9/other.png", LEASE, WINDOW)
        is None
    )
    with store.engine.begin() as connection:
        connection.execute(update(Image).where(Image.id == image_id).values(unreleased=True))
    assert store.take_image_unless_ended(image_id, album_id, key, LEASE, WINDOW) is None


def test_an_ended_image_named_with_another_album_or_object_is_left_to_the_long_way() -> None:
    """The long way dead-letters such a message as forged: it must not be acked as a duplicate."""
    store = new_store()
    image_id, album_id, key = _image(store, {"state": ImageState.UPLOADED, "attempts": 1})
    assert store.take_image_unless_ended(image_id, "another", key, LEASE, WINDOW) is None
    assert store.take_image_unless_ended(image_id, album_id, "u/9/x.png", LEASE, WINDOW) is None


def test_the_take_leases_the_image_for_the_lease_it_is_given() -> None:
    """The statement is built once and its values bound when it runs: each lands in its place."""
    store = new_store()
    image_id, album_id, key = _image(store, {})
    for lease in (LEASE, timedelta(seconds=90)):
        with store.engine.begin() as connection:
            connection.execute(
                update(Image).where(Image.id == image_id).values(state=ImageState.QUEUED)
            )
        taken = store.take_image_unless_ended(image_id, album_id, key, lease, timedelta(0))
        assert isinstance(taken, Taken)
        with store.engine.connect() as connection:
            started, until = connection.execute(
                select(Image.attempt_started_at, Image.lease_until).where(Image.id == image_id)
            ).one()
        assert abs((present(until) - present(started)) - lease) < timedelta(seconds=1), lease
