"""The user's pages: sign in, pick photos from the bucket, publish an album, watch it live.

Server-rendered (Jinja2, autoescaped) with one small script for the live parts. The pages call
the same validation, store, outbox and replayer as the JSON API, so both publish alike. Live
progress is a server-sent event stream that polls the store (there is no per-album broadcast to
subscribe to), sending the album whenever it changed.
"""

from __future__ import annotations

import functools
import hmac
import posixpath
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from werkzeug.exceptions import HTTPException

from shared import s3
from shared.store import (
    DONE,
    DONE_WITH_FAILURES,
    FAILED,
    PUBLISHING,
    QUEUED,
    RETRYING,
    UPLOADED,
    UPLOADING,
    AlbumSummary,
    AlbumView,
    KeyReused,
    QuotaExceeded,
    UserView,
)

from . import album_paging, rate_limits, sessions
from .album_changes import AlbumChanges
from .app import (
    NoPage,
    Services,
    album_json,
    check_album_for,
    check_destination,
    create_and_publish,
    image_json,
    limit_publish,
    limit_retry,
    quota_refusal,
    summary_json,
    user_page,
)
from .idempotency import InvalidKey, parse_key
from .live_streams import LiveStreams
from .next_path import same_site_path
from .page_albums import PageUnavailable
from .thumbnails import Busy, MissingObject
from .validation import InvalidAlbum, key_is_callers, parse_album

web = Blueprint("web", __name__, template_folder="templates")

FACEBOOK_PHOTO_URL = "https://www.facebook.com/photo.php?fbid={}"
IMAGE_LABELS = {QUEUED: "Queued", UPLOADING: "Uploading", RETRYING: "Retrying",
                UPLOADED: "Uploaded", FAILED: "Failed"}
ALBUM_LABELS = {PUBLISHING: "Publishing", DONE: "Done",
                DONE_WITH_FAILURES: "Done with failures"}
#: A page of the albums list; a page of an album's photos (the album page's cost stays that of
#: a page, however large the album or long the history).
ALBUMS_PER_PAGE = 50
PHOTOS_PER_PAGE = 24
#: How often an open stream reads the album; a browser sees a change within this.
POLL_S = 0.5
#: A comment this often keeps proxies from timing the stream out and notices a gone browser.
KEEPALIVE_S = 15.0
#: How long a browser waits before reconnecting (a stream that ended, or one refused for load).
RECONNECT_MS = 3000
#: When a browser refused a stream for its user's open streams tries again (the page's script).
USER_STREAMS_RETRY_S = 15
#: Seconds a thumbnail request refused for load is told to wait (Retry-After).
THUMBNAIL_RETRY_S = 2
_CODE_SUFFIX = re.compile(r"\s*\(((?:code|HTTP) \d+)\)\s*$")
_streams_lock = threading.Lock()


# -- plumbing: services, the signed-in user, CSRF, headers ---------------------------------------


def _services() -> Services:
    services: Services = current_app.extensions["services"]
    return services


def _current_user() -> UserView | None:
    return sessions.current_user(_services().store, _services().settings)


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages send a stranger to the sign-in page (and back afterwards); the rest say 401."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = _current_user()
        if user is None:
            # HEAD answers as GET does (RFC 9110, 9.3.2).
            if request.method in ("GET", "HEAD") and request.accept_mimetypes.accept_html:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            abort(401, "Sign in first.")
        g.user = user
        return view(*args, **kwargs)

    return wrapper


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


@web.before_request
def _check_csrf() -> None:
    # SameSite=Lax already keeps other sites' POSTs cookie-less; the token also stops a
    # same-site page (another app on this host) from posting in the user's name.
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
        abort(400, "This form has expired. Reload the page and try again.")


@web.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "user": g.get("user")}


@web.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if "Cache-Control" not in response.headers:
        # Pages show one user's data: never from a shared cache, never stale after sign-out.
        response.headers["Cache-Control"] = "no-store"
    return response


@web.errorhandler(HTTPException)
def _error_page(exc: HTTPException) -> Any:
    status = exc.code or 500
    message, headers = rate_limits.refusal(exc)
    if request.accept_mimetypes.best == "application/json":
        return {"error": message}, status, headers
    return render_template("error.html", status=status, title=exc.name,
                           message=message + ("." if headers else "")), status, headers


# -- what the pages show: the API's album JSON plus words and links ------------------------------


def plain_reason(error: str | None) -> tuple[str, str | None]:
    """The stored error as a sentence for people, and its technical code apart (or None)."""
    if not error:
        return "", None
    match = _CODE_SUFFIX.search(error)
    text = _CODE_SUFFIX.sub("", error).strip()
    if text.startswith("internal error"):
        text = "something went wrong on our side"  # the exception text helps nobody here
    elif text == "not found in the bucket":
        text = "the file is no longer in your storage"
    return text[:1].upper() + text[1:], match.group(1) if match else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(state: str, total: int, uploaded: int, failed: int) -> str:
    if state == DONE:
        return "The photo is on Facebook" if total == 1 else f"All {total} photos are on Facebook"
    if state == DONE_WITH_FAILURES:
        return (f"{uploaded} of {_plural(total, 'photo')} on Facebook, "
                f"{failed} could not be published")
    pending = total - uploaded - failed
    text = f"{uploaded} of {_plural(total, 'photo')} on Facebook"
    return text + (f", {failed} failed" if failed else "") + f", {pending} to go"


def _image_detail(state: str, attempts: int) -> str:
    if state == QUEUED:
        return "Waiting to upload"
    if state == UPLOADING:
        return "Sending to Facebook" + (f" (try {attempts})" if attempts > 1 else "")
    return ""


def image_model(image: dict[str, Any], index: int) -> dict[str, Any]:
    """An image as the page shows it; `index`: its position in the album, which the live
    stream's changes name it by."""
    reason, code = plain_reason(image["error"])
    state = image["state"]
    photo_id = image["photo_id"]
    return {
        **image,
        "index": index,
        "name": posixpath.basename(image["key"]),
        "label": IMAGE_LABELS.get(state, state),
        "detail": reason if state in (RETRYING, FAILED) else _image_detail(state,
                                                                           image["attempts"]),
        "code": code if state in (RETRYING, FAILED) else None,
        "fb_url": FACEBOOK_PHOTO_URL.format(quote(photo_id, safe=""))
        if state == UPLOADED and photo_id else None,
        "thumb_url": url_for("web.thumbnail", key=image["key"]),
    }


def where_text(destination: dict[str, Any]) -> str:
    """Where the album goes, in words, with how its post went when it is one."""
    kind = destination["kind"]
    if kind == "album":
        return f"Into your Page's album {destination.get('album_id')}."
    if kind == "new_album":
        return "Into a new Facebook album."
    post = destination.get("post") or {}
    state = post.get("state")
    if state == "posted":
        text = "One post on your Page, posted."
    elif state == "failed":
        text = f"One post on your Page; the post failed: {post.get('error')}."
    elif state == "pending":
        text = "One post on your Page, posting now that every photo is up."
    else:
        text = "One post on your Page, posted once every photo is up."
    note = destination.get("note")
    return f"{note}. {text}" if note else text


def album_fields_model(album: AlbumView) -> dict[str, Any]:
    """The album as the page and its stream show it (the API's JSON, so they never disagree),
    its images still as the API's JSON: the stream models only those it sends
    (services/api/album_changes.py)."""
    body = album_json(album)
    return _with_words(body, album)


def summary_model(summary: AlbumSummary) -> dict[str, Any]:
    """A list's album, or an album page's slice of photos: from the store's counts."""
    album = summary.album
    body = _with_words(summary_json(summary), album)
    body["images"] = [image_model(image_json(image), summary.first + i)
                      for i, image in enumerate(album.images)]
    body["cover_url"] = (url_for("web.thumbnail", key=summary.cover_key)
                         if summary.cover_key else None)
    return body


def _with_words(body: dict[str, Any], album: AlbumView) -> dict[str, Any]:
    total, counts = body["total"], body["counts"]
    uploaded, failed = counts.get(UPLOADED, 0), counts.get(FAILED, 0)
    body.update({
        "state_label": ALBUM_LABELS.get(album.state, album.state),
        "settled": album.state != PUBLISHING,
        "uploaded": uploaded, "failed": failed, "pending": total - uploaded - failed,
        "percent_uploaded": round(100 * uploaded / total, 2) if total else 0,
        "percent_failed": round(100 * failed / total, 2) if total else 0,
        "summary": _summary(album.state, total, uploaded, failed),
        "retry_text": f"{_plural(failed, 'photo')} could not be published. Once the cause "
                      "is fixed, retry: only the failed photos are sent again.",
        "url": url_for("web.album_page", album_id=album.id),
        "where": where_text(body["destination"]),
        "post_url": (body["destination"].get("post") or {}).get("url"),
    })
    return body


def _owned_album(album_id: str) -> AlbumView:
    album = _services().store.album(album_id, g.user.id)
    if album is None:
        abort(404, "There is no such album in your account.")
    return album


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a sign-in link must not send the user elsewhere."""
    return same_site_path(target) or url_for("web.albums")


# -- sign in and out -----------------------------------------------------------------------------


@web.get("/")
def home() -> Any:
    return redirect(url_for("web.albums" if _current_user() else "web.login"))


@web.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = request.values.get("next")
    if request.method == "GET":
        return render_template("login.html", next_url=next_url)
    guard = rate_limits.signin_guard()
    guard.check()
    guard.spend()  # every attempt on the form, not only the failed ones
    user = _services().store.user_by_token(request.form.get("token", "").strip())
    if user is None:
        return render_template("login.html", next_url=next_url,
                               error="That token is not valid. Check it and try again."), 401
    sessions.begin(user)
    return redirect(_safe_next(next_url), code=303)


@web.post("/logout")
def logout() -> Any:
    sessions.end(_services().store, _current_user())
    flash("You are signed out.")
    return redirect(url_for("web.login"), code=303)


# -- publishing ----------------------------------------------------------------------------------


def _bucket_images(user: UserView) -> list[dict[str, Any]]:
    services = _services()
    found = s3.list_keys(services.s3, services.settings.s3_bucket, user.prefix)
    return [{"key": item["key"], "name": item["key"][len(user.prefix):],
             "thumb_url": url_for("web.thumbnail", key=item["key"])} for item in found]


def _page_albums() -> tuple[list[dict[str, Any]], str | None]:
    """The Page's albums to offer, or why there are none to offer (the form works without)."""
    page = user_page(_services(), g.user.id)
    if page is None:
        return [], "Connect a Facebook Page to pick one of its albums."
    try:
        return _services().page_albums.albums(*page), None
    except PageUnavailable:
        return [], "Your Page's albums could not be listed just now."


def _publish_form(status: int = 200, error: str | None = None, details: list[str] | None = None,
                  form: dict[str, Any] | None = None) -> tuple[str, int]:
    """The publish page, with the form as the user filled it and why it was refused."""
    form = form or {"title": "", "notify_email": "", "images": [], "destination": "new_album",
                    "destination_album": ""}
    page_albums, page_albums_error = _page_albums()
    page = render_template("new_album.html", images=_bucket_images(g.user), form=form,
                           page_albums=page_albums, page_albums_error=page_albums_error,
                           selected=set(form["images"]), error=error, details=details or [],
                           max_images=_services().settings.max_album_images,
                           form_key=secrets.token_urlsafe(18))
    return page, status


@web.get("/albums/new")
@signed_in
def new_album() -> Any:
    return _publish_form()


@web.post("/albums/new")
@signed_in
@limit_publish
def publish() -> Any:
    services = _services()
    form = {"title": request.form.get("title", "").strip(),
            "notify_email": request.form.get("notify_email", "").strip(),
            "images": request.form.getlist("images"),
            "destination": request.form.get("destination", "new_album"),
            "destination_album": request.form.get("destination_album", "")}
    if not form["images"]:
        return _publish_form(422, "Pick at least one photo.", form=form)
    if not form["title"]:
        return _publish_form(422, "Give the album a title.", form=form)
    destination: dict[str, Any] = {"kind": form["destination"]}
    if form["destination"] == "album":
        destination["id"] = form["destination_album"] or None
    payload = {"title": form["title"], "images": form["images"],
               "notify_email": form["notify_email"] or None, "destination": destination}
    try:
        album = parse_album(payload, g.user.prefix, services.settings.max_album_images)
    except InvalidAlbum as exc:
        return _publish_form(422, exc.reason[:1].upper() + exc.reason[1:] + ".", exc.details,
                             form)
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
        created, _queued = create_and_publish(services, g.user.id, album, key)
    except KeyReused as exc:
        return _publish_form(422, "This form already published another album "
                             f"({exc.album_id}). Check your albums, or publish this one now.",
                             form=form)
    except NoPage as exc:
        return _publish_form(409, exc.reason[:1].upper() + exc.reason[1:] + ".", form=form)
    except QuotaExceeded as exc:
        refusal = quota_refusal(exc)
        page, status = _publish_form(429, refusal.description, form=form)
        return page, status, {"Retry-After": str(refusal.retry_after_s)}
    return redirect(url_for("web.album_page", album_id=created.album_id), code=303)


# -- albums --------------------------------------------------------------------------------------


@web.get("/albums")
@signed_in
def albums() -> Any:
    """The user's albums, ALBUMS_PER_PAGE at a time, newest first (`?cursor=`: older ones)."""
    try:
        after = album_paging.decode(request.args.get("cursor"))
    except album_paging.InvalidPaging:
        abort(400, "That link to older albums is not valid. Start from your newest albums")
    summaries, following = _services().store.album_summaries(g.user.id, ALBUMS_PER_PAGE,
                                                             after)
    older = (url_for("web.albums", cursor=album_paging.encode(following))
             if following else None)
    return render_template("albums.html", albums=[summary_model(s) for s in summaries],
                           older_url=older, newest_url=url_for("web.albums") if after else None)


@web.get("/albums/<album_id>")
@signed_in
def album_page(album_id: str) -> Any:
    """The album and PHOTOS_PER_PAGE of its photos (`?photos=N`: the Nth page of them)."""
    page = request.args.get("photos", "1")
    number = int(page) if page.isascii() and page.isdigit() and 0 < int(page) < 10**6 else 1
    first = (number - 1) * PHOTOS_PER_PAGE
    summary = _services().store.album_slice(album_id, g.user.id, first, PHOTOS_PER_PAGE)
    if summary is None:
        abort(404, "There is no such album in your account.")
    album = summary_model(summary)
    return render_template("album.html", album=album, photos=_photo_pages(album, number))


def _photo_pages(album: dict[str, Any], number: int) -> dict[str, Any]:
    """Where this page of photos stands among the album's, and the links to its neighbours."""
    first = (number - 1) * PHOTOS_PER_PAGE
    link = functools.partial(url_for, "web.album_page", album_id=album["id"])
    return {"first": first + 1, "last": first + len(album["images"]), "total": album["total"],
            "previous": link(photos=number - 1) if number > 1 else None,
            "next": link(photos=number + 1) if first + PHOTOS_PER_PAGE < album["total"]
            else None}


@web.post("/albums/<album_id>/retry")
@signed_in
@limit_retry
def retry(album_id: str) -> Any:
    """Re-open the album's failed images from the store (their dead letters stay, stale)."""
    _owned_album(album_id)
    reopened = _services().replayer.retry_album(album_id)
    message = (f"Trying {_plural(reopened, 'photo')} again." if reopened
               else "There are no failed photos to retry.")
    if request.accept_mimetypes.best == "application/json":  # the page's script
        return {"reopened": reopened, "message": message}, 202 if reopened else 409
    flash(message)
    return redirect(url_for("web.album_page", album_id=album_id), code=303)


# -- live progress: server-sent events -----------------------------------------------------------


def _stream_slots() -> threading.BoundedSemaphore:
    with _streams_lock:  # one pool per app and process, made on first use
        slots = current_app.extensions.get("web.streams")
        if slots is None:
            slots = threading.BoundedSemaphore(_services().settings.sse_streams())
            current_app.extensions["web.streams"] = slots
        return slots


def _album_events(album_id: str, user_id: int) -> Iterator[str]:
    """Send the album now, then what changed in it (services/api/album_changes.py) on every
    change; end once it settled, or after API_SSE_MAX_S.

    Each open stream holds one of the API_THREADS threads, so it never outlives its use: the browser
    closes it when the album settles and reconnects on its own after a timeout. Past the
    limit of open streams a browser still gets the album at once, then polls by reconnecting.
    """
    # Taken here, not in the view: a stream the server never started never releases a slot.
    slots = _stream_slots()
    holding = slots.acquire(blocking=False)
    store, clock = _services().store, _services().clock
    deadline = clock.monotonic() + _services().settings.api_sse_max_s
    changes, quiet_since = AlbumChanges(album_fields_model, image_model), clock.monotonic()
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        while True:
            album = store.album(album_id, user_id)
            if album is None:
                yield "event: gone\ndata: {}\n\n"
                return
            event = changes.event(album)
            if event is not None:
                quiet_since = clock.monotonic()
                yield event
            if album.state != PUBLISHING or not holding or clock.monotonic() > deadline:
                return
            if clock.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = clock.monotonic()
                yield ": still here\n\n"
            clock.sleep(POLL_S)
    finally:
        if holding:
            slots.release()


def _live_streams() -> LiveStreams:
    with _streams_lock:  # one count per app and process, made on first use
        streams = current_app.extensions.get("web.user_streams")
        if streams is None:
            streams = LiveStreams(_services().settings.sse_streams_per_user())
            current_app.extensions["web.user_streams"] = streams
        return streams


@web.get("/albums/<album_id>/events")
@signed_in
def album_events(album_id: str) -> Any:
    _owned_album(album_id)
    user_id, streams = g.user.id, _live_streams()
    if not streams.take(user_id):
        raise rate_limits.Refused(
            f"Too many live album pages open (at most {streams.per_user} for each user): close "
            "one; this page shows the album as it was and tries again", USER_STREAMS_RETRY_S)
    stream = stream_with_context(_album_events(album_id, user_id))
    response = Response(stream, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    # The server closes every response it started (PEP 3333), even one never iterated: the
    # user's stream is given back there, not in the generator, which may never have run.
    response.call_on_close(lambda: streams.give_back(user_id))
    return response


# -- thumbnails ----------------------------------------------------------------------------------


@web.get("/thumbnails/<path:key>")
@signed_in
def thumbnail(key: str) -> Any:
    # Only the caller's own objects, and only as small previews: the bucket stays private.
    if not key_is_callers(key, g.user.prefix):
        abort(404)
    services = _services()
    bucket = services.settings.s3_bucket
    thumbnails = services.thumbnails
    try:
        etag, size = thumbnails.head(services.s3, bucket, key)
        if request.if_none_match.contains(etag):
            response = Response(status=304)
        else:
            preview = thumbnails.get(services.s3, bucket, key, etag, size)
            response = Response(preview.body, mimetype=preview.content_type)
    except MissingObject:
        abort(404)
    except Busy:
        return ({"error": "too many thumbnails are being made right now; try again shortly"},
                503, {"Retry-After": str(THUMBNAIL_RETRY_S)})
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def format_utc(value: str | None) -> str:
    """'2026-01-02T14:03:05.123Z' as '2026-01-02 14:03 UTC' (the script shows local time)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value.removesuffix("Z"))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


web.add_app_template_filter(format_utc, "utc")
