"""What the album pages and their live stream show: the API's album JSON plus words for people
(state labels, a summary, a failure's plain reason) and links."""

from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import url_for

from shared.contracts import dead_letters
from shared.store import AlbumState, AlbumSummary, AlbumView, Destination, ImageState, PostState

from .album_json import album_json, image_json, summary_json

FACEBOOK_PHOTO_URL = "https://www.facebook.com/photo.php?fbid={}"
IMAGE_LABELS: dict[str, str] = {
    ImageState.QUEUED: "Queued",
    ImageState.UPLOADING: "Uploading",
    ImageState.RETRYING: "Retrying",
    ImageState.UPLOADED: "Uploaded",
    ImageState.FAILED: "Failed",
    ImageState.PAUSED: "Paused",
}
ALBUM_LABELS: dict[str, str] = {
    AlbumState.PUBLISHING: "Publishing",
    AlbumState.DONE: "Done",
    AlbumState.DONE_WITH_FAILURES: "Done with failures",
}
#: The image states whose stored error the page shows (a paused one's: what it waits for).
_EXPLAINED = (ImageState.RETRYING, ImageState.FAILED, ImageState.PAUSED)
_CODE_SUFFIX = re.compile(r"\s*\(((?:code|HTTP) \d+)\)\s*$")


def plain_reason(error: str | None) -> tuple[str, str | None]:
    """The stored error as a sentence for people, and its technical code apart (or None)."""
    if not error:
        return "", None
    match = _CODE_SUFFIX.search(error)
    text = _CODE_SUFFIX.sub("", error).strip()
    if text.startswith("internal error"):
        text = "something went wrong on our side"  # the exception text helps nobody here
    elif text == dead_letters.NOT_IN_BUCKET:
        text = "the file is not in your storage"  # never put there, or deleted since
    return text[:1].upper() + text[1:], match.group(1) if match else None


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(state: str, total: int, uploaded: int, failed: int) -> str:
    if state == AlbumState.DONE:
        return "The photo is on Facebook" if total == 1 else f"All {total} photos are on Facebook"
    if state == AlbumState.DONE_WITH_FAILURES:
        return (
            f"{uploaded} of {plural(total, 'photo')} on Facebook, {failed} could not be published"
        )
    pending = total - uploaded - failed
    text = f"{uploaded} of {plural(total, 'photo')} on Facebook"
    return text + (f", {failed} failed" if failed else "") + f", {pending} to go"


def _image_detail(state: str, attempts: int) -> str:
    if state == ImageState.QUEUED:
        return "Waiting to upload"
    if state == ImageState.UPLOADING:
        return "Sending to Facebook" + (f" (try {attempts})" if attempts > 1 else "")
    if state == ImageState.PAUSED:  # a row paused before its reason was stored
        return "Waiting for you to reconnect your Facebook Page"
    return ""


def image_model(image: dict[str, Any], index: int) -> dict[str, Any]:
    """An image as the page shows it; `index`: its position in the album, which the live
    stream's changes name it by."""
    reason, code = plain_reason(image["error"])
    state = image["state"]
    explained = reason if state in _EXPLAINED else ""
    photo_id = image["photo_id"]
    return {
        **image,
        "index": index,
        "name": posixpath.basename(image["key"]),
        "label": IMAGE_LABELS.get(state, state),
        "detail": explained or _image_detail(state, image["attempts"]),
        "code": code if state in _EXPLAINED else None,
        "fb_url": FACEBOOK_PHOTO_URL.format(quote(photo_id, safe=""))
        if state == ImageState.UPLOADED and photo_id
        else None,
        "thumb_url": url_for("web.thumbnail", key=image["key"]),
    }


def where_text(destination: dict[str, Any]) -> str:
    """Where the album goes, in words, with how its post went when it is one."""
    kind = destination["kind"]
    if kind == Destination.EXISTING_ALBUM:
        return f"Into your Page's album {destination.get('album_id')}."
    if kind == Destination.NEW_ALBUM:
        return "Into a new Facebook album."
    post = destination.get("post") or {}
    state = post.get("state")
    if state == PostState.POSTED:
        text = "One post on your Page, posted."
    elif state == PostState.FAILED:
        text = f"One post on your Page; the post failed: {post.get('error')}."
    elif state == PostState.PAUSED:
        # Rows paused before the uploader's reason lost its "waiting: " said it twice.
        reason = str(post.get("error") or "").removeprefix("waiting: ")
        text = f"One post on your Page, paused: {reason}."
    elif state == PostState.PENDING:
        text = "One post on your Page, posting now that every photo is up."
    else:
        text = "One post on your Page, posted once every photo is up."
    note = destination.get("note")
    return f"{note}. {text}" if note else text


def album_fields_model(album: AlbumView) -> dict[str, Any]:
    """The album as the page and its stream show it (the API's JSON, so they never disagree),
    its images still as the API's JSON: the stream models only those it sends
    (services/api/album_changes.py)."""
    return _with_words(album_json(album), album)


def summary_model(summary: AlbumSummary) -> dict[str, Any]:
    """A list's album, or an album page's slice of photos: from the store's counts."""
    album = summary.album
    body = _with_words(summary_json(summary), album)
    body["images"] = [
        image_model(image_json(image), summary.first + i) for i, image in enumerate(album.images)
    ]
    body["cover_url"] = (
        url_for("web.thumbnail", key=summary.cover_key) if summary.cover_key else None
    )
    return body


def _with_words(body: dict[str, Any], album: AlbumView) -> dict[str, Any]:
    total, counts = body["total"], body["counts"]
    uploaded, failed = counts.get(ImageState.UPLOADED, 0), counts.get(ImageState.FAILED, 0)
    body.update(
        {
            "state_label": ALBUM_LABELS.get(album.state, album.state),
            "settled": album.state != AlbumState.PUBLISHING,
            "uploaded": uploaded,
            "failed": failed,
            "pending": total - uploaded - failed,
            "percent_uploaded": round(100 * uploaded / total, 2) if total else 0,
            "percent_failed": round(100 * failed / total, 2) if total else 0,
            "summary": _summary(album.state, total, uploaded, failed),
            "retry_text": f"{plural(failed, 'photo')} could not be published. Once the cause "
            "is fixed, retry: only the failed photos are sent again.",
            "url": url_for("web.album_page", album_id=album.id),
            "where": where_text(body["destination"]),
            "post_url": (body["destination"].get("post") or {}).get("url"),
        }
    )
    return body


def format_utc(value: str | None) -> str:
    """'2026-01-02T14:03:05.123Z' as '2026-01-02 14:03 UTC' (the script shows local time)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value.removesuffix("Z"))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
