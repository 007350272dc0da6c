"""The album pages: the user's albums, one album, and retrying its failed photos."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for

from shared.store import AlbumView

from .album_intake import limit_retry
from .album_model import album_model, plural
from .page_guards import signed_in
from .services import current_services


def owned_album(album_id: str) -> AlbumView:
    album = current_services().store.album(album_id, g.user.id)
    if album is None:
        abort(404, "There is no such album in your account.")
    return album


@signed_in
def albums() -> Any:
    listed = [album_model(album) for album in current_services().store.albums(g.user.id)]
    return render_template("albums.html", albums=listed)


@signed_in
def album_page(album_id: str) -> Any:
    album = album_model(owned_album(album_id))
    return render_template("album.html", album=album)


@signed_in
@limit_retry
def retry(album_id: str) -> Any:
    """Re-open the album's failed images from the store (their dead letters stay, stale)."""
    owned_album(album_id)
    reopened = current_services().replayer.retry_album(album_id)
    message = (f"Trying {plural(reopened, 'photo')} again." if reopened
               else "There are no failed photos to retry.")
    if request.accept_mimetypes.best == "application/json":  # the page's script
        return {"reopened": reopened, "message": message}, 202 if reopened else 409
    flash(message)
    return redirect(url_for("web.album_page", album_id=album_id), code=303)
