"""Paging the caller's albums: the `limit` and `cursor` of `GET /api/albums` and the albums page.

A cursor is opaque to clients: the last album shown (its creation time and id), base64url. It
keeps working as albums are added (they come before it) and costs the same on page 100 as on
page 1 (shared/store/album_listing.py).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from shared.store import AlbumCursor

from .whole_numbers import BadNumber, whole_number

#: Albums per page unless `limit` says otherwise: what the list held before it had pages, so a
#: client that never reads `next` sees what it saw then.
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


_NOT_OURS = "cursor: not one this API gave (pass `next` as it came)"


class InvalidPaging(ValueError):
    """A `limit` or `cursor` the caller sent that means nothing: the reason, for a 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(cursor: AlbumCursor) -> str:
    raw = f"{cursor.created_at}|{cursor.album_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str | None) -> AlbumCursor | None:
    """The cursor a `next` carried; None for none; InvalidPaging for one we did not make."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, _, album_id = raw.partition("|")
        # Only checked: the store compares the text as it gave it (AlbumCursor).
        created_at = datetime.fromisoformat(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidPaging(_NOT_OURS) from None
    if (
        not album_id
        or len(album_id) > 64
        or not (album_id.isascii() and album_id.isalnum())
        or created_at.tzinfo
        or len(when) > 32
    ):
        raise InvalidPaging(_NOT_OURS)
    return AlbumCursor(when, album_id)


def parse_limit(text: str | None, default: int = DEFAULT_LIMIT) -> int:
    # An empty `limit=` is a limit sent without a number, refused like any other non-number
    # (the fuzzer found it taken as the default); only a missing one means the default.
    if text is None:
        return default
    try:
        return whole_number(text, "limit", 1, MAX_LIMIT)
    except BadNumber as exc:
        raise InvalidPaging(exc.reason) from None
