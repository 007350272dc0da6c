"""An in-memory stand-in for `GraphClient`, for fast tests of the uploader's handler.

It keeps albums and photos, counts every request it would have sent (a listing costs one per
page, as on the wire), and plays scripted faults per call: a request that fails before it
lands, one that lands and then loses its answer (a timeout, a 5xx from a proxy), one held
until the test lets it go (a slow request), and a photo Facebook has but does not list yet.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from shared.adapters.graph_client import LIST_PAGE_SIZE, GraphError

from .fake_graph_client import graph_now, pixels

#: Ids for albums, photos and posts, unique across every fake of the process as Facebook's are:
#: tests that share a store must not find one test's album or photo under another's id.
_IDS = itertools.count(1)
#: What a listing shows of a photo, as Graph does (its caption is `name`).
_LISTED = frozenset({"id", "name", "created_time", "width", "height"})


@dataclass(frozen=True)
class Fault:
    """What one call does instead of answering at once."""

    #: Raised by the call (after the work when `land` is set).
    error: BaseException | None = None
    #: The work is done before `error` is raised: the request landed, its answer was lost.
    land: bool = False
    #: The call waits for this before doing anything (a slow request).
    gate: threading.Event | None = None
    #: A photo that lands is left out of this many listings of its album (Facebook lists it
    #: late), or until `reveal()`.
    unlisted: int = 0


class FakeGraph:
    """Duck-typed `GraphClient`: create_album, upload_photo, list_album_photos, list_albums,
    create_post, list_posts. Unpublished photos go to the Page (`page_id`), in no album."""

    page_id = "page"

    def __init__(self, page_size: int = LIST_PAGE_SIZE, refuse_duplicates: bool = False) -> None:
        self._lock = threading.Lock()
        self._ids = _IDS
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._unlisted: dict[str, int] = {}
        self.page_size = page_size
        #: Answer a photo the album already holds (the same bytes and caption) with code 506,
        #: as Facebook answers a duplicate post.
        self.refuse_duplicates = refuse_duplicates
        #: Requests by method name; a listing counts one per page.
        self.calls: Counter[str] = Counter()
        self.albums: dict[str, dict[str, Any]] = {}
        self.photos: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []
        #: Set whenever a call is entered (per method), for tests that wait on one.
        self.entered: dict[str, threading.Event] = defaultdict(threading.Event)

    def plan(self, method: str, *faults: Fault) -> None:
        """The next calls of `method` play these faults, one each, in order."""
        with self._lock:
            self._faults[method].extend(faults)

    def reveal(self) -> None:
        """Photos left out of listings show up from now on."""
        with self._lock:
            self._unlisted.clear()

    def close(self) -> None:
        pass

    def create_album(self, name: str, message: str | None = None) -> str:
        fault = self._enter("create_album")
        with self._lock:
            album_id = f"album-{next(self._ids)}"
            self.albums[album_id] = {
                "id": album_id,
                "name": name,
                "description": message,
                "created_time": graph_now(),
            }
        self._answer(fault)
        return album_id

    def upload_photo(
        self,
        album_id: str,
        source: BinaryIO,
        length: int,
        filename: str,
        content_type: str,
        caption: str,
        published: bool = True,
    ) -> str:
        fault = self._enter("upload_photo")
        data = source.read(length)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if album_id == self.page_id and not published:
                photo_id = f"photo-{next(self._ids)}"
                self.photos.append(
                    {"id": photo_id, "album_id": album_id, "name": caption, "published": False}
                )
                self._answer(fault)
                return photo_id
            if album_id not in self.albums:
                raise GraphError("(#120) Invalid album id", http_status=400, code=120)
            if self.refuse_duplicates and any(
                p["album_id"] == album_id and p["name"] == caption and p["sha256"] == digest
                for p in self.photos
            ):
                raise GraphError("(#506) Duplicate status message", http_status=400, code=506)
            photo_id = f"photo-{next(self._ids)}"
            self.photos.append(
                {
                    "id": photo_id,
                    "album_id": album_id,
                    "name": caption,
                    "created_time": graph_now(),
                    "sha256": digest,
                    **pixels(data),
                }
            )
            if fault is not None and fault.unlisted:
                self._unlisted[photo_id] = fault.unlisted
        self._answer(fault)
        return photo_id

    def list_album_photos(self, album_id: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            held = [p for p in self.photos if p["album_id"] == album_id]
            listed = [
                {k: v for k, v in p.items() if k in _LISTED}
                for p in held
                if not self._unlisted.get(p["id"])
            ]
            for photo in held:
                if self._unlisted.get(photo["id"]):
                    self._unlisted[photo["id"]] -= 1
        return self._pages("list_album_photos", listed)

    def list_albums(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            listed = [dict(album) for album in self.albums.values()]
        return self._pages("list_albums", listed)

    def create_post(self, message: str, photo_ids: Any) -> str:
        fault = self._enter("create_post")
        with self._lock:
            post_id = f"{self.page_id}_post-{next(self._ids)}"
            self.posts.append({"id": post_id, "message": message, "media": list(photo_ids)})
        self._answer(fault)
        return post_id

    def list_posts(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            listed = [
                {
                    "id": p["id"],
                    "message": p["message"],
                    "attachments": {
                        "data": [
                            {
                                "subattachments": {
                                    "data": [{"target": {"id": m}} for m in p["media"]]
                                }
                            }
                        ]
                    },
                }
                for p in reversed(self.posts)
            ]
        return self._pages("list_posts", listed)

    def photos_in(self, album_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self.photos if p["album_id"] == album_id]

    def _pages(self, method: str, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        # A generator, like the client's: a caller that stops early sends no further pages.
        for start in range(0, max(len(items), 1), self.page_size):
            fault = self._enter(method)
            self._answer(fault)
            yield from items[start : start + self.page_size]

    def _enter(self, method: str) -> Fault | None:
        with self._lock:
            self.calls[method] += 1
            fault = self._faults[method].popleft() if self._faults[method] else None
        self.entered[method].set()
        if fault is not None and fault.gate is not None:
            fault.gate.wait(timeout=30)
        if fault is not None and fault.error is not None and not fault.land:
            raise fault.error
        return fault

    @staticmethod
    def _answer(fault: Fault | None) -> None:
        if fault is not None and fault.error is not None and fault.land:
            raise fault.error
