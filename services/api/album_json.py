"""An album as the JSON API answers it (GET /api/albums/<id>); the web pages build on it, so
both always show the same."""

from __future__ import annotations

from typing import Any

from shared.contracts.destinations import post_url
from shared.store import AlbumSummary, AlbumView, Destination, ImageView


def album_json(album: AlbumView, with_images: bool = True) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for image in album.images:
        counts[image.state] = counts.get(image.state, 0) + 1
    body = album_fields(album, counts, len(album.images))
    if with_images:
        body["images"] = [image_json(image) for image in album.images]
    return body


def summary_json(summary: AlbumSummary) -> dict[str, Any]:
    """An album of a list: what album_json gives without images, from the store's counts."""
    return album_fields(summary.album, summary.counts, summary.total)


def album_fields(album: AlbumView, counts: dict[str, int], total: int) -> dict[str, Any]:
    return {
        "id": album.id,
        "title": album.title,
        "state": album.state,
        "created_at": album.created_at.isoformat() + "Z",
        "counts": counts,
        "total": total,
        "destination": destination_json(album),
    }


def image_json(image: ImageView) -> dict[str, Any]:
    return {
        "key": image.key,
        "state": image.state,
        "attempts": image.attempts,
        "photo_id": image.photo_id,
        "error": image.error,
        "next_attempt_at": image.next_attempt_at.isoformat() + "Z"
        if image.next_attempt_at
        else None,
    }


def destination_json(album: AlbumView) -> dict[str, Any]:
    """Where the album goes; for a multi-photo post, how the post went and its link."""
    body: dict[str, Any] = {"kind": album.destination, "note": album.destination_note}
    if album.destination == Destination.EXISTING_ALBUM or (
        album.destination == Destination.NEW_ALBUM and album.fb_album_id
    ):
        body["album_id"] = album.fb_album_id
    if album.destination == Destination.POST:
        body["post"] = {
            "state": album.post_state,
            "id": album.fb_post_id,
            "url": post_url(album.fb_post_id) if album.fb_post_id else None,
            "error": album.post_error,
        }
    return body
