"""The Idempotency-Key of a publish request: what a valid key is, and what makes two requests
the same album (plain functions, no I/O)."""

from __future__ import annotations

import hashlib
import json
import re

from shared.store import Destination

from .validation import AlbumRequest

HEADER = "Idempotency-Key"
MAX_LENGTH = 200
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


class InvalidKey(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_key(value: str | None) -> str | None:
    """The key a client sent (None: it sent none), or InvalidKey saying why it is unusable."""
    if value is None:
        return None
    if not value:
        raise InvalidKey(f"{HEADER} is empty: send 1 to {MAX_LENGTH} printable characters")
    if len(value) > MAX_LENGTH:
        raise InvalidKey(f"{HEADER} is {len(value)} characters long; at most {MAX_LENGTH}")
    if _PRINTABLE.fullmatch(value) is None:
        raise InvalidKey(
            f"{HEADER} may hold only printable ASCII characters (space to '~'), such as a UUID"
        )
    return value


def fingerprint(album: AlbumRequest) -> str:
    """The album asked for, as validated: a retry that differs only in spacing is the same."""
    asked: dict[str, object] = {
        "title": album.title,
        "images": album.images,
        "notify_email": album.notify_email,
    }
    # Only when given: an album of plain keys keeps the fingerprint it had before captions.
    if any(album.captions):
        asked["captions"] = album.captions
    if album.description:
        asked["description"] = album.description
    # The default keeps the fingerprints it had.
    if album.destination.kind != Destination.NEW_ALBUM.value:
        asked["destination"] = album.destination.model_dump()
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
