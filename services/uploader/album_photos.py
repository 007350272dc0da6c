"""Reading an album back from Facebook, once for all its retrying images.

A retry looks in the album for a photo an earlier attempt sent but never recorded (the Graph API
has no idempotency key); which photo is its is decided by `photo_match` from what this listing
holds (caption, size, created time: no mark of ours is public). Listing the whole album for
every retry of every image costs a retry round of N images N listings of N/25 pages each; here
one listing, taken for the first retry, serves the album's other retries in this process for
`ttl_s`, and concurrent ones wait for it rather than list too.

Why a listing that old still answers "not sent" truly: an attempt starts at least the shortest
retry delay after the previous attempt of its image ended (the retry waits in a delay tier), and
that attempt's photo, if it landed, landed before it ended. A listing taken less than that delay
before the new attempt started was taken after the photo landed. So `ttl_s` must stay below the
shortest retry delay (the handler uses half of it). This process's own uploads are added to a
listing it holds, so it never misses one of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .photo_match import Photo, parse_photo

#: Albums whose listing is kept; past this, expired ones are dropped (a process moves on).
_MAX_ALBUMS = 256


@dataclass
class _Listing:
    at: float
    #: The album's photos by id, as Graph listed them (and this process's own uploads).
    photos: dict[str, Photo] = field(default_factory=dict)


class AlbumPhotos:
    def __init__(
        self,
        list_photos: Callable[[str], Iterable[dict[str, Any]]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_photos = list_photos
        self._ttl_s = ttl_s
        self._clock = clock
        self._listings: dict[str, _Listing] = {}
        self._locks: dict[str, threading.Lock] = {}
        #: The last listing of an album that failed: when, and why.
        self._failures: dict[str, tuple[float, Exception]] = {}
        self._lock = threading.Lock()

    def photos(self, fb_album: str, fresh: bool = False) -> list[Photo]:
        """The album's photos. `fresh`: list again whatever is held (a 506 said the photo
        exists after a listing did not show it)."""
        asked = self._clock()
        with self._album_lock(fb_album):
            failed = self._failures.get(fb_album)
            if failed is not None and failed[0] >= asked:
                # The listing this call waited for failed: so does this call, rather than
                # each waiter trying again in turn (and waiting out a timeout each).
                raise failed[1]
            listing = self._listings.get(fb_album)
            if fresh or listing is None or self._clock() - listing.at >= self._ttl_s:
                try:
                    listing = self._list(fb_album)
                except Exception as exc:
                    self._failures[fb_album] = (self._clock(), exc)
                    raise
                self._failures.pop(fb_album, None)
            return list(listing.photos.values())

    def add(self, fb_album: str, photo: Photo) -> None:
        """This process uploaded a photo: a listing held for its album now shows it."""
        with self._lock:
            listing = self._listings.get(fb_album)
            if listing is not None:
                listing.photos.setdefault(photo.id, photo)

    def _list(self, fb_album: str) -> _Listing:
        # Timed from before the first page: the listing shows at least what landed by then.
        listing = _Listing(self._clock())
        for raw in self._list_photos(fb_album):
            photo = parse_photo(raw)
            listing.photos.setdefault(photo.id, photo)
        with self._lock:
            self._forget_expired()
            self._listings[fb_album] = listing
        return listing

    def _album_lock(self, fb_album: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(fb_album, threading.Lock())

    def _forget_expired(self) -> None:
        """The caller holds `_lock`."""
        if len(self._listings) < _MAX_ALBUMS:
            return
        now = self._clock()
        for fb_album in [a for a, held in self._listings.items() if now - held.at >= self._ttl_s]:
            del self._listings[fb_album]
            self._locks.pop(fb_album, None)
            self._failures.pop(fb_album, None)
