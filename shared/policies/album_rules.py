"""The album's rules, as plain functions: when it has ended, and what its settle says.

The store applies them under the album's row lock (`Store._settle_if_ended`); kept out of it so
they are unit-tested in milliseconds (`tests/unit/test_album_rules.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.contracts import messages
from shared.store.tables import TERMINAL, AlbumState, ImageState


@dataclass(frozen=True)
class ImageEnd:
    """What the settle needs to know of one image."""

    image_id: int
    key: str
    state: str
    photo_id: str | None = None
    error: str | None = None


def has_ended(album_state: str, image_states: Iterable[str]) -> bool:
    """An album still publishing ends once every one of its images has ended (uploaded or
    failed); one that already settled does not end again until it is re-opened."""
    return album_state == AlbumState.PUBLISHING and all(state in TERMINAL for state in image_states)


def settled_state(images: Sequence[ImageEnd]) -> str:
    """`done` when every image made it, `done_with_failures` when any failed."""
    failed = any(i.state == ImageState.FAILED for i in images)
    return AlbumState.DONE_WITH_FAILURES if failed else AlbumState.DONE


def settled_event(
    album_id: str, settle_seq: int, images: Sequence[ImageEnd]
) -> messages.AlbumSettled:
    """What the settle says: each uploaded image with its photo, each failed one with why."""
    return messages.AlbumSettled(
        album_id=album_id,
        settle_seq=settle_seq,
        uploaded=[
            messages.UploadedImage(image_id=i.image_id, key=i.key, photo_id=i.photo_id or "")
            for i in images
            if i.state == ImageState.UPLOADED
        ],
        failed=[
            messages.FailedImage(image_id=i.image_id, key=i.key, reason=i.error or "failed")
            for i in images
            if i.state == ImageState.FAILED
        ],
    )
