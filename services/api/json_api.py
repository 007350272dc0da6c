"""The JSON API under /api (bearer tokens): publish an album (answering at once), follow its
progress, retry its failed images, list the caller's images and Page; and the probes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, jsonify, request, url_for

from shared.adapters import s3
from shared.observability.readiness import readiness_body, store_reachable
from shared.store import AlbumState, KeyReused, QuotaExceeded, UserView

from . import album_paging, json_body
from .album_intake import (
    NoPage,
    check_album_for,
    check_destination,
    limit_publish,
    limit_retry,
    quota_refusal,
    record_and_send,
    user_page,
)
from .album_json import album_json, summary_json
from .api_errors import error_response
from .idempotency import HEADER, InvalidKey, parse_key
from .openapi import SPEC
from .page_albums import PageUnavailable
from .rate_limits import signin_guard
from .services import current_services
from .validation import InvalidAlbum, parse_album

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(401, "send 'Authorization: Bearer <token>'")
        guard = signin_guard()
        guard.check()
        user = current_services().store.user_by_token(token.strip())
        if user is None:
            guard.spend()
            return error_response(401, "unknown token")
        g.user = user
        return view(*args, **kwargs)

    return wrapper


@api.post("/api/albums")
@authenticated
@limit_publish
def publish_album() -> Any:
    user: UserView = g.user
    services = current_services()
    try:
        key = parse_key(request.headers.get(HEADER))
    except InvalidKey as exc:
        return error_response(400, exc.reason)
    if not request.is_json:
        return error_response(415, "send a JSON body with Content-Type: application/json")
    try:
        payload = json_body.parse(request.get_data(cache=False))
    except json_body.UnreadableBody as exc:
        return error_response(400, exc.reason)
    try:
        album = parse_album(payload, user.prefix, services.settings.max_album_images)
    except InvalidAlbum as exc:
        return error_response(422, exc.reason, exc.details)
    unfit = check_album_for(services, user, album)
    if unfit is not None:
        return error_response(422, unfit)
    refused = check_destination(services, user.id, album)
    if refused is not None:
        return refused
    try:
        created, queued = record_and_send(services, user.id, album, key)
    except KeyReused as exc:
        return error_response(
            422,
            f"this {HEADER} was already used for another album "
            f"({exc.album_id}); send a new key for a new album",
        )
    except NoPage as exc:
        return error_response(409, exc.reason)
    except QuotaExceeded as exc:
        raise quota_refusal(exc) from None
    log.info(
        "album %s accepted: %d images, %s",
        created.album_id,
        len(album.images),
        "a replay of its first request"
        if created.replayed
        else ("queued" if queued else "left to the outbox relay"),
        extra={"album_id": created.album_id},
    )
    location = url_for("api.get_album", album_id=created.album_id)
    body = {
        "id": created.album_id,
        "title": album.title,
        "state": AlbumState.PUBLISHING,
        "images": len(album.images),
        "queued": queued,
        "status_url": location,
    }
    headers = {"Location": location}
    if created.replayed:
        # The first answer's album: its messages went out with the first request.
        headers["Idempotent-Replayed"] = "true"
        body.update(replayed=True, queued=None)
    return jsonify(body), 202, headers


@api.get("/api/albums/<album_id>")
@authenticated
def get_album(album_id: str) -> Any:
    album = current_services().store.album(album_id, g.user.id)
    if album is None:
        return error_response(404, "no such album")
    return jsonify(album_json(album))


@api.post("/api/albums/<album_id>/retry")
@authenticated
@limit_retry
def retry_album(album_id: str) -> Any:
    """Queue the album's failed images again, re-opened from the store: no dead letter is
    read, so the answer does not wait on the dead-letter queue's length."""
    services = current_services()
    if services.store.album(album_id, g.user.id) is None:
        return error_response(404, "no such album")
    reopened = services.replayer.retry_album(album_id)
    if not reopened:
        return error_response(409, "the album has no failed images to retry")
    return jsonify({"id": album_id, "reopened": reopened}), 202


@api.get("/api/albums")
@authenticated
def list_albums() -> Any:
    """A page of the caller's albums, newest first; `next` is the cursor of the page after."""
    try:
        limit = album_paging.parse_limit(request.args.get("limit"))
        after = album_paging.decode(request.args.get("cursor"))
    except album_paging.InvalidPaging as exc:
        return error_response(400, exc.reason)
    summaries, following = current_services().store.album_summaries(g.user.id, limit, after)
    return jsonify(
        {
            "albums": [summary_json(summary) for summary in summaries],
            "next": album_paging.encode(following) if following else None,
        }
    )


@api.get("/api/images")
@authenticated
def list_images() -> Any:
    services = current_services()
    images = s3.list_keys(services.s3, services.settings.s3_bucket, g.user.prefix)
    return jsonify({"prefix": g.user.prefix, "images": images})


@api.get("/api/page")
@authenticated
def get_page() -> Any:
    """The user's connected Facebook Page (no token), and whether a single-tenant Page serves
    users without one."""
    services = current_services()
    page = services.store.page(g.user.id)
    body = (
        None
        if page is None
        else {
            "id": page.page_id,
            "name": page.page_name,
            "state": page.state,
            "connected_at": page.connected_at.isoformat() + "Z",
        }
    )
    return jsonify(
        {
            "page": body,
            "single_tenant": services.settings.single_tenant_page is not None,
            "connect_url": url_for("connect.start", _external=True),
        }
    )


@api.get("/api/page/albums")
@authenticated
def list_page_albums() -> Any:
    """The user's Page's albums, to publish into one (`destination: {"kind": "album"}`)."""
    services = current_services()
    page = user_page(services, g.user.id)
    if page is None:
        return error_response(409, "no Facebook Page to list: connect one at /connect/facebook")
    try:
        return jsonify({"albums": services.page_albums.albums(*page)})
    except PageUnavailable as exc:
        return error_response(503, str(exc))


@api.get("/api/openapi.json")
def openapi() -> Any:
    return jsonify(SPEC)


@api.get("/healthz")
def healthz() -> Any:
    """Liveness: the process answers. No dependency is checked here, so that a store or broker
    that is down never gets a healthy API restarted (that is /readyz's job)."""
    return jsonify({"status": "ok"})


#: How long /readyz waits for the publisher's broker connection (it may be reconnecting).
_BROKER_WAIT_S = 1.0


@api.get("/readyz")
def readyz() -> Any:
    """Readiness: the store answers and the publisher holds a broker connection."""
    services = current_services()

    def broker() -> str | None:
        if services.outbox.broker_connected(_BROKER_WAIT_S):
            return None
        return "broker unreachable: the publisher has no connection"

    status, body = readiness_body({"store": store_reachable(services.store), "broker": broker})
    return jsonify(body), status
