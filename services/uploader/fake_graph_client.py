"""A Graph client for unit tests: albums and photos in memory, failures on demand.

Same calls as `shared.adapters.graph_client.GraphClient`, no HTTP.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from .image_size import size_of


class FakeGraphClient:
    page_id = "page"

    def __init__(self) -> None:
        self.albums: list[dict[str, Any]] = []
        self.photos: list[dict[str, Any]] = []
        #: Raised, one per call, by the next uploads (a GraphError, a network error...).
        self.upload_failures: list[BaseException] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def create_album(self, name: str, message: str | None = None) -> str:
        with self._lock:
            album = {
                "id": f"album-{next(self._ids)}",
                "name": name,
                "description": message,
                "created_time": graph_now(),
            }
            self.albums.append(album)
            return str(album["id"])

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
        with self._lock:
            if self.upload_failures:
                raise self.upload_failures.pop(0)
        data = source.read(length)
        with self._lock:
            photo = {
                "id": f"photo-{next(self._ids)}",
                "album_id": album_id,
                "name": caption,
                "filename": filename,
                "content_type": content_type,
                "size": len(data),
                "created_time": graph_now(),
                **pixels(data),
                "published": published,
            }
            self.photos.append(photo)
            return str(photo["id"])

    def list_album_photos(self, album_id: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            return iter([p for p in self.photos if p["album_id"] == album_id])

    def list_albums(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            return iter(list(self.albums))

    def close(self) -> None:
        pass


def graph_now() -> str:
    """Now as Graph writes times: whole seconds, +0000."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def pixels(data: bytes) -> dict[str, int]:
    size = size_of(data[:65536])
    return {"width": size[0], "height": size[1]} if size else {}
