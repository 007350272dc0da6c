"""The API: publish an album (answering at once), follow its progress, list the caller's images.

`create_app` is the composition root; the broker connection and the outbox relay start lazily,
on first need.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, render_template, request, url_for
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError

from shared import error_ids, s3, topology
from shared.broker.publisher import Publisher
from shared.clock import Clock, SystemClock
from shared.destinations import post_url
from shared.outbox import Outbox
from shared.readiness import readiness_body, store_reachable
from shared.replay import Replayer
from shared.store import (
    CONNECTED,
    AlbumSummary,
    AlbumView,
    Created,
    ImageView,
    KeyReused,
    QuotaExceeded,
    Store,
    UserView,
)
from shared.token_cipher import TokenCipher, cipher_from_setting

from . import album_paging, json_body, rate_limits, request_trace, security_headers
from .idempotency import HEADER, InvalidKey, fingerprint, parse_key
from .openapi import SPEC
from .page_albums import PageAlbums, PageUnavailable
from .rate_limits import Refused, per_user, signin_guard
from .sessions import SessionCookies, lifetime
from .settings import ApiSettings
from .thumbnails import Thumbnails
from .validation import AlbumRequest, InvalidAlbum, parse_album

#: Per user, on the API and the web pages alike (one allowance each).
limit_publish = per_user("publish", lambda s: s.publish_rate_limit, "albums published")
limit_retry = per_user("retry", lambda s: s.retry_rate_limit, "retries of failed images")

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)


class Services:
    """What the routes use, built once per process on first need."""

    def __init__(self, settings: ApiSettings, store: Store, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        # What the live stream polls and waits by; a test passes one it moves by hand.
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._s3: Any = None
        self._page_albums: PageAlbums | None = None
        self._cipher: TokenCipher | None = None
        self._thumbnails: Thumbnails | None = None
        self._stop = threading.Event()

    @property
    def outbox(self) -> Outbox:
        with self._lock:
            if self._outbox is None:
                # The API's broker user writes to the work exchange only (docs/broker-users.md).
                self._outbox = Outbox(self.store, Publisher(self.settings.amqp_url),
                                      relays=(topology.WORK_EXCHANGE,))
                self._outbox.start_relay(self._stop)
            return self._outbox

    @property
    def cipher(self) -> TokenCipher:
        """Seals and opens the connected Pages' tokens (TOKEN_ENCRYPTION_KEYS)."""
        with self._lock:
            if self._cipher is None:
                keys = self.settings.token_encryption_keys.get_secret_value()
                self._cipher = cipher_from_setting(keys)
            return self._cipher

    @property
    def replayer(self) -> Replayer:
        return Replayer(self.store, self.outbox, self.settings.amqp_url)

    @property
    def page_albums(self) -> PageAlbums:
        with self._lock:
            if self._page_albums is None:
                self._page_albums = PageAlbums(self.settings)
            return self._page_albums

    @property
    def thumbnails(self) -> Thumbnails:
        with self._lock:
            if self._thumbnails is None:
                s = self.settings
                self._thumbnails = Thumbnails(renders=s.api_thumbnail_renders,
                                              wait_s=s.api_thumbnail_wait_s,
                                              max_pixels=s.api_thumbnail_max_pixels)
            return self._thumbnails

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = s3.make_client(self.settings)
            return self._s3


def create_app(settings: ApiSettings | None = None, store: Store | None = None) -> Flask:
    settings = settings or ApiSettings()
    store = store or Store(settings.database_url)
    store.create_schema()
    app = Flask(__name__)
    # The server refuses a larger body before reading it; this catches what reaches the app
    # another way (the test client, a chunked body).
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    app.extensions["services"] = Services(settings, store)
    # The web pages' signed session cookie (the JSON API uses bearer tokens, not cookies):
    # named, flagged and checked in services/api/sessions.py.
    app.secret_key = settings.session_secret()
    app.session_interface = SessionCookies(settings)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=lifetime(settings))
    request_trace.install(app)
    security_headers.install(app, settings)
    rate_limits.init_app(app, settings)
    app.register_blueprint(api)
    from .web import web  # imported here: web.py builds on this module

    app.register_blueprint(web)
    from .page_connect import connect

    app.register_blueprint(connect)
    from .operator_desk import desk

    app.register_blueprint(desk)
    app.register_error_handler(HTTPException, _http_error)
    # By its code, so that it also serves the web pages (their handler is for HTTPException).
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(DBAPIError, _store_unavailable)
    return app


def _services() -> Services:
    services: Services = current_app.extensions["services"]
    return services


def _error(status: int, reason: str, details: list[str] | None = None) -> tuple[Any, int]:
    body: dict[str, Any] = {"error": reason}
    if details:
        body["details"] = details
    return jsonify(body), status


def _http_error(exc: HTTPException) -> Any:
    reason, retry_after = rate_limits.refusal(exc)
    response, status = _error(exc.code or 500, reason)
    # The exception's own headers are part of the answer: a 405's Allow (RFC 9110 requires
    # it), a 429's Retry-After. Its Content-Type was for the HTML body this replaces.
    for name, value in [*exc.get_headers(), *retry_after.items()]:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


def _internal_error(exc: InternalServerError) -> tuple[Any, int]:
    """A bug of ours: the detail goes to the log under an error id, the caller gets the id."""
    error_id = error_ids.logged(log, f"{request.method} {request.path} failed",
                                exc.original_exception or exc, logging.ERROR)
    reason = f"{error_ids.INTERNAL} (error id {error_id}); try again, or quote the id to support"
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": reason, "error_id": error_id}), 500
    return render_template("error.html", status=500, title="Something went wrong",
                           message=reason[:1].upper() + reason[1:] + "."), 500


def _store_unavailable(exc: DBAPIError) -> tuple[Any, int]:
    # Raised before or at a commit, never after one (create_and_publish). A commit the
    # connection broke in may still have happened, so this does not say "nothing was
    # accepted": a client repeats a POST with the same Idempotency-Key to find out.
    log.error("store unavailable: %s", exc.__class__.__name__)
    return _error(503, "the store is unavailable; try again shortly (a POST sent with an "
                       f"{HEADER} header is safe to repeat with the same key)")


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "send 'Authorization: Bearer <token>'")
        guard = signin_guard()
        guard.check()
        user = _services().store.user_by_token(token.strip())
        if user is None:
            guard.spend()
            return _error(401, "unknown token")
        g.user = user
        return view(*args, **kwargs)

    return wrapper


@api.post("/api/albums")
@authenticated
@limit_publish
def publish_album() -> Any:
    user: UserView = g.user
    services = _services()
    try:
        key = parse_key(request.headers.get(HEADER))
    except InvalidKey as exc:
        return _error(400, exc.reason)
    if not request.is_json:
        return _error(415, "send a JSON body with Content-Type: application/json")
    try:
        payload = json_body.parse(request.get_data(cache=False))
    except json_body.UnreadableBody as exc:
        return _error(400, exc.reason)
    try:
        album = parse_album(payload, user.prefix, services.settings.max_album_images)
    except InvalidAlbum as exc:
        return _error(422, exc.reason, exc.details)
    unfit = check_album_for(services, user, album)
    if unfit is not None:
        return _error(422, unfit)
    refused = check_destination(services, user.id, album)
    if refused is not None:
        return refused
    try:
        created, queued = create_and_publish(services, user.id, album, key)
    except KeyReused as exc:
        return _error(422, f"this {HEADER} was already used for another album "
                           f"({exc.album_id}); send a new key for a new album")
    except NoPage as exc:
        return _error(409, exc.reason)
    except QuotaExceeded as exc:
        raise quota_refusal(exc) from None
    log.info("album %s accepted: %d images, %s", created.album_id, len(album.images),
             "a replay of its first request" if created.replayed else
             ("queued" if queued else "left to the outbox relay"),
             extra={"album_id": created.album_id})
    location = url_for("api.get_album", album_id=created.album_id)
    body = {"id": created.album_id, "title": album.title, "state": "publishing",
            "images": len(album.images), "queued": queued, "status_url": location}
    headers = {"Location": location}
    if created.replayed:
        # The first answer's album: its messages went out with the first request.
        headers["Idempotent-Replayed"] = "true"
        body.update(replayed=True, queued=None)
    return jsonify(body), 202, headers


class NoPage(Exception):
    """The user has no Page to publish to: none connected (and no single-tenant Page), or
    the connected one waits for a reconnect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def target_page(services: Services, user_id: int) -> str | None:
    """The Page a new album of the user's publishes to, recorded with it: the user's
    connected Page, else None for the single-tenant Page; NoPage if there is neither."""
    page = services.store.page(user_id)
    if page is not None:
        if page.state != CONNECTED:
            raise NoPage(f"your Facebook Page {page.page_name} must be reconnected before "
                         "publishing (Facebook no longer accepts its token, or blocked it): "
                         "open /connect/facebook")
        return page.page_id
    if services.settings.single_tenant_page is not None:
        return None
    raise NoPage("connect a Facebook Page first: open /connect/facebook in a browser")


def user_page(services: Services, user_id: int) -> tuple[str, str] | None:
    """The Page (id, token) the user publishes to now: their connected Page, else the
    single-tenant one; None when there is neither (publishing says why)."""
    page = services.store.page(user_id)
    if page is not None:
        credentials = services.store.page_credentials(user_id, page.page_id)
        if page.state != CONNECTED or credentials is None:
            return None
        return page.page_id, services.cipher.decrypt(credentials.token_sealed)
    return services.settings.single_tenant_page


def check_album_for(services: Services, user: UserView, album: AlbumRequest) -> str | None:
    """What the user may not ask for, whatever the album: mail to an address that is not
    theirs, or more images than their daily quota ever allows. None: nothing."""
    if album.notify_email and album.notify_email.casefold() != user.email.casefold():
        return (f"notify_email must be your own address ({user.email}): mail goes only to "
                "an address that is proven to be yours (leave it out to be mailed there)")
    quota = services.settings.images_per_day
    if len(album.images) > quota:
        return (f"this album has {len(album.images)} images and your quota is {quota} images "
                "a day: split it into albums of at most that many")
    return None


def quota_refusal(exc: QuotaExceeded) -> Refused:
    """The 429 of an album over the images-per-day quota: the quota, what is used, when the
    album fits."""
    return Refused(f"Your quota is {exc.quota} images a day and your albums of the last 24 "
                   f"hours hold {exc.used} of them: this album's {exc.requested} images do not "
                   f"fit, so nothing was published. The quota resets as albums pass 24 hours: "
                   f"this album fits from {exc.fits_at:%Y-%m-%d %H:%M:%S} UTC", exc.wait_s)


def check_destination(services: Services, user_id: int,
                      album: AlbumRequest) -> tuple[Any, int] | None:
    """An existing album must be one of the Page's: refused before anything is recorded."""
    destination = album.destination
    if destination.kind != "album" or destination.id is None:
        return None
    page = user_page(services, user_id)
    if page is None:
        return None  # publishing refuses it with the reason (NoPage)
    try:
        known = services.page_albums.has(*page, destination.id)
    except PageUnavailable as exc:
        return _error(503, f"{exc}; try again (nothing was published)")
    if not known:
        return _error(422, f"album {destination.id} is not an album of your Page "
                           "(GET /api/page/albums lists them)")
    return None


def create_and_publish(services: Services, user_id: int, album: AlbumRequest,
                       key: str | None) -> tuple[Created, bool]:
    """Commit the album with its outbox rows (once per idempotency key), then publish them.

    Nothing after the commit may fail the request: the album is accepted then, and whatever
    this publish misses (the broker away, the store failing to mark the rows sent) the relay
    sends. Returns the album and whether its messages were confirmed and marked now; raises
    QuotaExceeded (nothing recorded) if the album does not fit in the user's daily quota."""
    page_id = target_page(services, user_id)
    outbox = services.outbox  # built before the commit, so that cannot fail after it
    destination = (album.destination.kind, album.destination.id)
    window = services.settings.album_window
    quota = services.settings.images_per_day
    if key is None:
        album_id, rows = services.store.create_album(user_id, album.title, album.notify_email,
                                                     album.images, album.captions,
                                                     album.description, page_id=page_id,
                                                     destination=destination, window=window,
                                                     images_per_day=quota)
        created = Created(album_id, rows, replayed=False)
    else:
        created = services.store.create_album_once(user_id, key, fingerprint(album), album.title,
                                                   album.notify_email, album.images,
                                                   album.captions, album.description,
                                                   page_id=page_id, destination=destination,
                                                   window=window, images_per_day=quota)
    return created, outbox.publish_committed(created.rows)


@api.get("/api/albums/<album_id>")
@authenticated
def get_album(album_id: str) -> Any:
    album = _services().store.album(album_id, g.user.id)
    if album is None:
        return _error(404, "no such album")
    return jsonify(album_json(album))


@api.post("/api/albums/<album_id>/retry")
@authenticated
@limit_retry
def retry_album(album_id: str) -> Any:
    """Queue the album's failed images again, re-opened from the store: no dead letter is
    read, so the answer does not wait on the dead-letter queue's length."""
    services = _services()
    if services.store.album(album_id, g.user.id) is None:
        return _error(404, "no such album")
    reopened = services.replayer.retry_album(album_id)
    if not reopened:
        return _error(409, "the album has no failed images to retry")
    return jsonify({"id": album_id, "reopened": reopened}), 202


@api.get("/api/albums")
@authenticated
def list_albums() -> Any:
    """A page of the caller's albums, newest first; `next` is the cursor of the page after."""
    try:
        limit = album_paging.parse_limit(request.args.get("limit"))
        after = album_paging.decode(request.args.get("cursor"))
    except album_paging.InvalidPaging as exc:
        return _error(400, exc.reason)
    summaries, following = _services().store.album_summaries(g.user.id, limit, after)
    return jsonify({"albums": [summary_json(summary) for summary in summaries],
                    "next": album_paging.encode(following) if following else None})


@api.get("/api/images")
@authenticated
def list_images() -> Any:
    services = _services()
    images = s3.list_keys(services.s3, services.settings.s3_bucket, g.user.prefix)
    return jsonify({"prefix": g.user.prefix, "images": images})


@api.get("/api/page")
@authenticated
def get_page() -> Any:
    """The user's connected Facebook Page (no token), and whether a single-tenant Page serves
    users without one."""
    services = _services()
    page = services.store.page(g.user.id)
    body = None if page is None else {
        "id": page.page_id, "name": page.page_name, "state": page.state,
        "connected_at": page.connected_at.isoformat() + "Z"}
    return jsonify({"page": body, "single_tenant": services.settings.single_tenant_page
                    is not None, "connect_url": url_for("connect.start", _external=True)})


@api.get("/api/page/albums")
@authenticated
def list_page_albums() -> Any:
    """The user's Page's albums, to publish into one (`destination: {"kind": "album"}`)."""
    services = _services()
    page = user_page(services, g.user.id)
    if page is None:
        return _error(409, "no Facebook Page to list: connect one at /connect/facebook")
    try:
        return jsonify({"albums": services.page_albums.albums(*page)})
    except PageUnavailable as exc:
        return _error(503, str(exc))


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
    services = _services()

    def broker() -> str | None:
        if services.outbox.broker_connected(_BROKER_WAIT_S):
            return None
        return "broker unreachable: the publisher has no connection"

    status, body = readiness_body({"store": store_reachable(services.store), "broker": broker})
    return jsonify(body), status


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
    return {"id": album.id, "title": album.title, "state": album.state,
            "created_at": album.created_at.isoformat() + "Z", "counts": counts,
            "total": total, "destination": destination_json(album)}


def image_json(image: ImageView) -> dict[str, Any]:
    return {"key": image.key, "state": image.state, "attempts": image.attempts,
            "photo_id": image.photo_id, "error": image.error,
            "next_attempt_at": image.next_attempt_at.isoformat() + "Z"
            if image.next_attempt_at else None}


def destination_json(album: AlbumView) -> dict[str, Any]:
    """Where the album goes; for a multi-photo post, how the post went and its link."""
    body: dict[str, Any] = {"kind": album.destination, "note": album.destination_note}
    if album.destination == "album" or (album.destination == "new_album" and album.fb_album_id):
        body["album_id"] = album.fb_album_id
    if album.destination == "post":
        body["post"] = {"state": album.post_state, "id": album.fb_post_id,
                        "url": post_url(album.fb_post_id) if album.fb_post_id else None,
                        "error": album.post_error}
    return body
