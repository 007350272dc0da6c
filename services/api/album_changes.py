"""What an album's live stream sends: the whole album once, then only what changed.

An album of 200 photos where one photo moved would otherwise send all 200 on every change: the
stream's bytes and the page's work would grow with the album, not with what happened. The first
event (`album`) is the album as the page shows it; each later one (`changes`) holds the
album-level fields that changed (`album`) and the images that changed (`images`, each with its
`index` in the album). Images are compared as the API's JSON, so an image whose stored row
changed in a way nobody sees sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shared.store import AlbumView

#: The album's fields as the page shows them, with `images` as the API's JSON.
FieldsModel = Callable[[AlbumView], dict[str, Any]]
#: One image as the page shows it, from its API JSON and its index.
ImageModel = Callable[[dict[str, Any], int], dict[str, Any]]


class AlbumChanges:
    """One stream's memory of what it sent."""

    def __init__(self, fields_model: FieldsModel, image_model: ImageModel) -> None:
        self._fields_model = fields_model
        self._image_model = image_model
        self._fields: dict[str, Any] | None = None
        self._images: list[dict[str, Any]] = []

    def event(self, album: AlbumView) -> str | None:
        """The next event to send for the album as it is now; None when nothing changed."""
        fields = self._fields_model(album)
        images = fields.pop("images")
        if self._fields is None:
            full = {
                **fields,
                "images": [self._image_model(image, i) for i, image in enumerate(images)],
            }
            full["cover_url"] = full["images"][0]["thumb_url"] if images else None
            self._remember(fields, images)
            return _event("album", full)
        changed_fields = {
            name: value for name, value in fields.items() if self._fields.get(name) != value
        }
        changed_images = [
            self._image_model(image, i)
            for i, image in enumerate(images)
            if i >= len(self._images) or self._images[i] != image
        ]
        if not changed_fields and not changed_images:
            return None
        self._remember(fields, images)
        return _event("changes", {"album": changed_fields, "images": changed_images})

    def _remember(self, fields: dict[str, Any], images: list[dict[str, Any]]) -> None:
        self._fields, self._images = fields, images


def _event(name: str, body: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
