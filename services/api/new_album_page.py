"""The publish page: pick photos from the bucket and where they go, then publish the album
(through the same checks and commit as the JSON API)."""

from __future__ import annotations

import secrets
from typing import Any

from flask import abort, g, redirect, render_template, request, url_for

from shared.adapters import s3
from shared.store import Destination, KeyReused, QuotaExceeded, UserView

from .album_intake import (
    NoPage,
    check_album_for,
    check_destination,
    limit_publish,
    quota_refusal,
    record_and_send,
    user_page,
)
from .idempotency import InvalidKey, parse_key
from .page_albums import PageUnavailable
from .page_guards import signed_in
from .services import current_services
from .validation import InvalidAlbum, parse_album


def _bucket_images(user: UserView) -> list[dict[str, Any]]:
    services = current_services()
    found = s3.list_keys(services.s3, services.settings.s3_bucket, user.prefix)
    return [
        {
            "key": item["key"],
            "name": item["key"][len(user.prefix) :],
            "thumb_url": url_for("web.thumbnail", key=item["key"]),
        }
        for item in found
    ]


def _page_albums() -> tuple[list[dict[str, Any]], str | None]:
    """The Page's albums to offer, or why there are none to offer (the form works without)."""
    page = user_page(current_services(), g.user.id)
    if page is None:
        return [], "Connect a Facebook Page to pick one of its albums."
    try:
        return current_services().page_albums.albums(*page), None
    except PageUnavailable:
        return [], "Your Page's albums could not be listed just now."


def _publish_form(
    status: int = 200,
    error: str | None = None,
    details: list[str] | None = None,
    form: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """The publish page, with the form as the user filled it and why it was refused."""
    form = form or {
        "title": "",
        "notify_email": "",
        "images": [],
        "destination": Destination.NEW_ALBUM,
        "destination_album": "",
    }
    page_albums, page_albums_error = _page_albums()
    page = render_template(
        "new_album.html",
        images=_bucket_images(g.user),
        form=form,
        page_albums=page_albums,
        page_albums_error=page_albums_error,
        selected=set(form["images"]),
        error=error,
        details=details or [],
        max_images=current_services().settings.max_album_images,
        form_key=secrets.token_urlsafe(18),
    )
    return page, status


@signed_in
def new_album() -> Any:
    return _publish_form()


@signed_in
@limit_publish
def publish_album() -> Any:
    services = current_services()
    form = {
        "title": request.form.get("title", "").strip(),
        "notify_email": request.form.get("notify_email", "").strip(),
        "images": request.form.getlist("images"),
        "destination": request.form.get("destination", Destination.NEW_ALBUM),
        "destination_album": request.form.get("destination_album", ""),
    }
    if not form["images"]:
        return _publish_form(422, "Pick at least one photo.", form=form)
    if not form["title"]:
        return _publish_form(422, "Give the album a title.", form=form)
    destination: dict[str, Any] = {"kind": form["destination"]}
    if form["destination"] == Destination.EXISTING_ALBUM:
        destination["id"] = form["destination_album"] or None
    payload = {
        "title": form["title"],
        "images": form["images"],
        "notify_email": form["notify_email"] or None,
        "destination": destination,
    }
    try:
        album = parse_album(payload, g.user.prefix, services.settings.max_album_images)
    except InvalidAlbum as exc:
        return _publish_form(422, exc.reason[:1].upper() + exc.reason[1:] + ".", exc.details, form)
    unfit = check_album_for(services, g.user, album)
    if unfit is not None:
        return _publish_form(422, unfit[:1].upper() + unfit[1:] + ".", form=form)
    refused = check_destination(services, g.user.id, album)
    if refused is not None:
        return _publish_form(refused[1], refused[0].get_json()["error"] + ".", form=form)
    try:
        key = parse_key(request.form.get("idempotency_key"))
    except InvalidKey as exc:
        abort(400, exc.reason)
    try:
        created, _queued = record_and_send(services, g.user.id, album, key)
    except KeyReused as exc:
        return _publish_form(
            422,
            "This form already published another album "
            f"({exc.album_id}). Check your albums, or publish this one now.",
            form=form,
        )
    except NoPage as exc:
        return _publish_form(409, exc.reason[:1].upper() + exc.reason[1:] + ".", form=form)
    except QuotaExceeded as exc:
        refusal = quota_refusal(exc)
        page, status = _publish_form(429, refusal.description, form=form)
        return page, status, {"Retry-After": str(refusal.retry_after_s)}
    return redirect(url_for("web.album_page", album_id=created.album_id), code=303)
