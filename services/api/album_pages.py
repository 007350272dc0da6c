"""The album pages: the user's albums, one album, and retrying its failed photos."""

from __future__ import annotations

import functools
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for

from shared.store import AlbumView

from . import album_paging
from .album_intake import limit_retry
from .album_model import plural, summary_model
from .page_guards import signed_in
from .services import current_services
from .whole_numbers import BadNumber, page_number

#: A page of the albums list; a page of an album's photos (a gallery page: the render of each
#: photo is most of the page's cost, so a page costs the same however large the album or long
#: the history).
ALBUMS_PER_PAGE = 50
PHOTOS_PER_PAGE = 24


def owned_album(album_id: str) -> AlbumView:
    album = current_services().store.album(album_id, g.user.id)
    if album is None:
        abort(404, "There is no such album in your account.")
    return album


@signed_in
def albums() -> Any:
    """The user's albums, ALBUMS_PER_PAGE at a time, newest first (`?cursor=`: older ones)."""
    try:
        after = album_paging.decode(request.args.get("cursor"))
    except album_paging.InvalidPaging:
        abort(400, "That link to older albums is not valid. Start from your newest albums")
    summaries, following = current_services().store.album_summaries(
        g.user.id, ALBUMS_PER_PAGE, after
    )
    older = url_for("web.albums", cursor=album_paging.encode(following)) if following else None
    return render_template(
        "albums.html",
        albums=[summary_model(s) for s in summaries],
        older_url=older,
        newest_url=url_for("web.albums") if after else None,
    )


@signed_in
def album_page(album_id: str) -> Any:
    """The album and PHOTOS_PER_PAGE of its photos (`?photos=N`: the Nth page of them)."""
    try:
        number = page_number(request.args.get("photos"), "photos")
    except BadNumber as exc:
        abort(400, exc.reason)
    first = (number - 1) * PHOTOS_PER_PAGE
    summary = current_services().store.album_slice(album_id, g.user.id, first, PHOTOS_PER_PAGE)
    if summary is None:
        abort(404, "There is no such album in your account.")
    if number > 1 and not summary.album.images:  # past its last photo: no "Photos 577-576 of 30"
        abort(404, f"The album has no page {number} of photos.")
    album = summary_model(summary)
    return render_template("album.html", album=album, photos=_photo_pages(album, number))


def _photo_pages(album: dict[str, Any], number: int) -> dict[str, Any]:
    """Where this page of photos stands among the album's, and the links to its neighbours."""
    first = (number - 1) * PHOTOS_PER_PAGE
    link = functools.partial(url_for, "web.album_page", album_id=album["id"])
    return {
        "first": first + 1,
        "last": first + len(album["images"]),
        "total": album["total"],
        "previous": link(photos=number - 1) if number > 1 else None,
        "next": link(photos=number + 1) if first + PHOTOS_PER_PAGE < album["total"] else None,
    }


@signed_in
@limit_retry
def retry(album_id: str) -> Any:
    """Re-open the album's failed images from the store (their dead letters stay, stale)."""
    owned_album(album_id)
    reopened = current_services().replayer.retry_album(album_id)
    message = (
        f"Trying {plural(reopened, 'photo')} again."
        if reopened
        else "There are no failed photos to retry."
    )
    if request.accept_mimetypes.best == "application/json":  # the page's script
        return {"reopened": reopened, "message": message}, 202 if reopened else 409
    flash(message)
    return redirect(url_for("web.album_page", album_id=album_id), code=303)
