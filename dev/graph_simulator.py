"""Local stand-in for the slice of Facebook's Graph API the uploader uses.

It serves album creation, multipart photo uploads into an album and album photo listing with
Graph-shaped bodies, status codes and headers, and keeps everything in memory. A control API
under `/_sim/` lets tests and operators inspect what arrived and inject faults (errors,
throttling, latency, refused files). What Facebook takes for a photo, and the sources, are in
docs/facebook-photo-limits.md.

Photo uploads are refused as Facebook refuses them: over 10 MB, or not JPEG, PNG, GIF, BMP or
TIFF (judged by the bytes, not the name), with Graph error 324 "Missing or invalid image file",
the code Meta's Page Photos reference lists for a bad image file. Meta documents no distinct
code or subcode for an oversized photo or an unsupported format; the message detail and the
too-large subcode here are ours. `GET /_sim/uploads` counts the photo upload requests and the
bytes they declared, refused ones included, so a test can see that nothing was sent.

Page settings (`PageSettings`, from the environment at start, changed at run time with
`PUT /_sim/page`): `REFUSE_ALBUM_CREATION` (default true) refuses `POST /{page-id}/albums` for
good, as today's Facebook does (Meta's Page Albums reference documents no way to create one;
the answer given is the one seen for album writes, HTTP 403 `(#200) ... deprecated`);
`UNPUBLISHED_PHOTO_TTL_S` (default 24 h) is how long a photo uploaded with `published=false` to
`/{page-id}/photos` is kept unless a feed post attaches it (`POST /{page-id}/feed` with
`attached_media[i]={"media_fbid": id}`). Unpublished photos are listed in no album; posts are
listed at `GET /{page-id}/posts`. The facts and their sources: docs/facebook-destinations.md.

Run it with `python -m dev.graph_simulator [--host H] [--port P]`; tests call `create_app`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import itertools
import json
import logging
import os
import random
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import waitress
from flask import Flask, Response, g, jsonify, redirect, request
from markupsafe import escape
from PIL import Image as PILImage
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import LimitedStream

from dev.sim_pages import DEFAULT_USER, PageAccessError, SimPages

log = logging.getLogger("graph_simulator")

DEFAULT_PAGE_ID = "1000000000000001"
DEFAULT_PAGE_TOKEN = "dev-page-token"
DEFAULT_APP_ID = "sim-app"
DEFAULT_APP_SECRET = "sim-app-secret"
DEFAULT_PORT = 8010
DEFAULT_VERSION = "v24.0"

MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Room for multipart boundaries, part headers and the caption on top of the image itself.
MAX_BODY_BYTES = MAX_IMAGE_BYTES + 64 * 1024
#: Bodies larger than this are not drained before an early refusal; the client sees a reset.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024
#: How much of a photo is kept to read its pixel size from (as the uploader reads it).
HEADER_BYTES = 64 * 1024 + 1024
TOO_LARGE_SUBCODE = 2069019
DEFAULT_LIST_LIMIT = 25
MAX_LIST_LIMIT = 100
LIST_FIELDS = ("id", "name", "created_time", "width", "height", "images")
ALBUM_FIELDS = ("id", "name", "description", "created_time")
POST_FIELDS = ("id", "message", "created_time", "attachments")

VERSION_RE = re.compile(r"v\d+\.\d+")
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
FAULT_ENDPOINTS = ("photos", "albums", "list", "feed")
FAULT_KEYS = frozenset(
    {
        "latency_s",
        "error_rates",
        "throttle_minutes",
        "reject_filenames",
        "endpoints",
        "seed",
        "page_usage_pct",
        "app_usage_pct",
    }
)

# Graph code -> (HTTP status Meta uses, message after "(#code) ", is_transient or None when Meta
# leaves the field out, as it does for most throttling responses).
GRAPH_ERRORS: dict[int, tuple[int, str, bool | None]] = {
    1: (500, "An unknown error has occurred.", None),
    2: (500, "An unexpected error has occurred. Please retry your request later.", True),
    3: (400, "Application does not have the capability to make this API call.", False),
    4: (403, "Application request limit reached", True),
    10: (403, "Application does not have permission for this action", False),
    17: (400, "User request limit reached", None),
    32: (400, "Page request limit reached", None),
    100: (400, "Invalid parameter", False),
    102: (400, "Session key invalid or no longer valid", False),
    120: (400, "Invalid album id", False),
    190: (400, "Invalid OAuth access token - Cannot parse access token", False),
    200: (403, "Permissions error", False),
    220: (400, "Album or albums not visible", False),
    321: (400, "Album is full", False),
    324: (400, "Missing or invalid image file", False),
    341: (400, "Application limit reached", True),
    368: (400, "The action attempted has been deemed abusive or is otherwise disallowed", False),
    506: (400, "Duplicate status message", False),
    613: (400, "Calls to this api have exceeded the rate limit.", None),
    80001: (
        400,
        "There have been too many calls to this Page account. Wait a bit and try again.",
        None,
    ),
}

# Magic bytes of the formats Facebook accepts for photos.
IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


class GraphFault(Exception):
    """Raised inside a handler to answer with a Graph error body."""

    def __init__(
        self,
        code: int,
        detail: str | None = None,
        *,
        subcode: int | None = None,
        error_type: str = "OAuthException",
    ) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.subcode = subcode
        self.error_type = error_type


class PlainHttpFault(Exception):
    """Raised to answer like a proxy or load balancer would: a status and no Graph body."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class Faults:
    """Fault injection settings; PUT /_sim/faults replaces all of them at once."""

    latency_s: float = 0.0
    error_rates: dict[int, float] = field(default_factory=dict)
    throttle_minutes: int = 0
    #: Usage reported on every answer (X-Page-Usage and X-Business-Use-Case-Usage for the Page,
    #: X-App-Usage for the app), in percent; 0 sends no usage header.
    page_usage_pct: float = 0.0
    app_usage_pct: float = 0.0
    reject_filenames: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=lambda: ["photos"])
    seed: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        if not isinstance(data, dict):
            raise ValueError("the fault config must be a JSON object")
        unknown = set(data) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(FAULT_KEYS)}")
        return cls(
            latency_s=_non_negative(data.get("latency_s", 0.0), "latency_s"),
            error_rates=_error_rates(data.get("error_rates", {})),
            throttle_minutes=int(
                _non_negative(data.get("throttle_minutes", 0), "throttle_minutes")
            ),
            page_usage_pct=_non_negative(data.get("page_usage_pct", 0.0), "page_usage_pct"),
            app_usage_pct=_non_negative(data.get("app_usage_pct", 0.0), "app_usage_pct"),
            reject_filenames=_string_list(data.get("reject_filenames", []), "reject_filenames"),
            endpoints=_endpoints(data.get("endpoints", ["photos"])),
            seed=_optional_int(data.get("seed"), "seed"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_s": self.latency_s,
            "error_rates": {str(code): rate for code, rate in self.error_rates.items()},
            "throttle_minutes": self.throttle_minutes,
            "page_usage_pct": self.page_usage_pct,
            "app_usage_pct": self.app_usage_pct,
            "reject_filenames": list(self.reject_filenames),
            "endpoints": list(self.endpoints),
            "seed": self.seed,
        }


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _error_rates(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise ValueError('error_rates must be an object like {"613": 0.5}')
    rates: dict[int, float] = {}
    for key, rate in value.items():
        try:
            code = int(key)
        except ValueError:
            raise ValueError(f"error_rates key {key!r} is not a number") from None
        probability = _non_negative(rate, f"error_rates[{key}]")
        if probability > 1:
            raise ValueError(f"error_rates[{key}] must be a probability between 0 and 1")
        rates[code] = probability
    return rates


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of strings")
    return list(value)


def _endpoints(value: Any) -> list[str]:
    endpoints = _string_list(value, "endpoints")
    unknown = set(endpoints) - set(FAULT_ENDPOINTS)
    if unknown:
        raise ValueError(f"unknown endpoints {sorted(unknown)}; allowed: {list(FAULT_ENDPOINTS)}")
    return endpoints


#: The refusal of `POST /{page-id}/albums`: the answer Facebook gives for an album write it no
#: longer allows (docs/facebook-destinations.md); permanent, like every code-200 answer.
ALBUM_CREATION_REFUSED = (
    "This endpoint is deprecated: Page albums can no longer be created through the Graph API"
)
#: As today's Facebook: the uploader falls back to one multi-photo post by itself.
REFUSED_BY_DEFAULT = True
#: How long Facebook keeps a photo uploaded with published=false that no post attached.
DEFAULT_UNPUBLISHED_TTL_S = 24 * 3600.0


@dataclass
class PageSettings:
    """How the simulated Page behaves; `PUT /_sim/page` changes them, `/_sim/reset` restores
    the ones it started with."""

    refuse_album_creation: bool = REFUSED_BY_DEFAULT
    unpublished_ttl_s: float = DEFAULT_UNPUBLISHED_TTL_S

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PageSettings:
        env = os.environ if environ is None else environ
        refuse = env.get("REFUSE_ALBUM_CREATION", str(REFUSED_BY_DEFAULT)).strip().lower()
        if refuse not in {"true", "false", "1", "0", "yes", "no"}:
            raise ValueError(f"REFUSE_ALBUM_CREATION must be true or false, not {refuse!r}")
        ttl = float(env.get("UNPUBLISHED_PHOTO_TTL_S", DEFAULT_UNPUBLISHED_TTL_S))
        return cls(refuse in {"true", "1", "yes"}, _non_negative(ttl, "UNPUBLISHED_PHOTO_TTL_S"))

    def updated(self, data: Any) -> PageSettings:
        if not isinstance(data, dict):
            raise ValueError("the page settings must be a JSON object")
        unknown = set(data) - {"refuse_album_creation", "unpublished_ttl_s"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        refuse = data.get("refuse_album_creation", self.refuse_album_creation)
        if not isinstance(refuse, bool):
            raise ValueError("refuse_album_creation must be true or false")
        ttl = _non_negative(
            data.get("unpublished_ttl_s", self.unpublished_ttl_s), "unpublished_ttl_s"
        )
        return PageSettings(refuse, ttl)

    def to_json(self) -> dict[str, Any]:
        return {
            "refuse_album_creation": self.refuse_album_creation,
            "unpublished_ttl_s": self.unpublished_ttl_s,
        }


class SimState:
    """Albums, photos and faults; handlers run on many threads, so all access takes the lock."""

    def __init__(self, page: PageSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._start_page = page or PageSettings()
        self.page = self._start_page
        self._albums: dict[str, dict[str, Any]] = {}
        self._photos: list[dict[str, Any]] = []
        self._posts: list[dict[str, Any]] = []
        self._uploads = {"requests": 0, "declared_bytes": 0}
        self._faults = Faults()
        self._rng = random.Random()
        # Ids keep counting across resets so a stale id from before a reset never matches anew.
        self._ids = itertools.count(1)

    def reset(self) -> None:
        with self._lock:
            self._albums.clear()
            self._photos.clear()
            self._posts.clear()
            self.page = self._start_page
            self._uploads = {"requests": 0, "declared_bytes": 0}
            self._faults = Faults()
            self._rng = random.Random()

    def add_album(self, name: str, message: str | None, page_id: str = "") -> dict[str, Any]:
        with self._lock:
            album_id = str(2_000_000_000_000_000 + next(self._ids))
            album = {
                "id": album_id,
                "page_id": page_id,
                "name": name,
                "message": message,
                "created_at": _now().isoformat(),
            }
            self._albums[album_id] = album
            return dict(album)

    def has_album(self, album_id: str) -> bool:
        with self._lock:
            return album_id in self._albums

    def albums(self, page_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(album)
                for album in self._albums.values()
                if page_id is None or album["page_id"] == page_id
            ]

    def album_page(self, album_id: str) -> str | None:
        """The Page that owns the album (None: no such album)."""
        with self._lock:
            album = self._albums.get(album_id)
            return str(album["page_id"]) if album else None

    def add_photo(self, page_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            number = next(self._ids)
            photo = {
                "id": str(3_000_000_000_000_000 + number),
                "post_id": f"{page_id}_{4_000_000_000_000_000 + number}",
                "received_at": _now().isoformat(),
                "received_mono": time.monotonic(),
                **fields,
            }
            if not photo.get("published", True):
                # Facebook promises only the photo id for an unpublished upload.
                del photo["post_id"]
            self._photos.append(photo)
            return dict(photo)

    def add_post(self, page_id: str, message: str, media: list[str]) -> dict[str, Any]:
        """A feed post attaching unpublished photos; refused (code 100) when one is unknown,
        already attached or expired, and then nothing is posted."""
        with self._lock:
            ttl = self.page.unpublished_ttl_s
            now = time.monotonic()
            by_id = {photo["id"]: photo for photo in self._photos}
            for fbid in media:
                photo = by_id.get(fbid)
                if (
                    photo is None
                    or photo.get("published", True)
                    or photo.get("attached_to")
                    or photo["album_id"] != page_id
                ):
                    raise GraphFault(
                        100,
                        f"Invalid parameter: attached_media {fbid} is not an "
                        "unpublished photo of this Page",
                    )
                if now - photo["received_mono"] > ttl:
                    raise GraphFault(
                        100,
                        f"Invalid parameter: unpublished photo {fbid} has "
                        "expired (Facebook keeps them about 24 hours)",
                    )
            post_id = f"{page_id}_{5_000_000_000_000_000 + next(self._ids)}"
            for fbid in media:
                by_id[fbid]["attached_to"] = post_id
            post = {
                "id": post_id,
                "page": page_id,
                "message": message,
                "attached_media": list(media),
                "created_at": _now().isoformat(),
            }
            self._posts.append(post)
            return dict(post)

    def posts(self, page_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(post) for post in self._posts if page_id is None or post["page"] == page_id
            ]

    def note_upload(self, declared_bytes: int) -> None:
        """One photo upload request arrived, whatever its answer."""
        with self._lock:
            self._uploads["requests"] += 1
            self._uploads["declared_bytes"] += declared_bytes

    def uploads(self) -> dict[str, int]:
        with self._lock:
            return dict(self._uploads)

    def photos(self, album_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(photo)
                for photo in self._photos
                if album_id is None or photo["album_id"] == album_id
            ]

    def album_photos(self, album_id: str) -> list[dict[str, Any]]:
        """What an album lists: its published photos (unpublished ones are in no album)."""
        return [photo for photo in self.photos(album_id) if photo.get("published", True)]

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def draw_fault(self, endpoint: str) -> tuple[float, int | None]:
        """Latency to add and the error (if any) to answer with, for one request."""
        with self._lock:
            faults = self._faults
            if endpoint not in faults.endpoints:
                return 0.0, None
            for code, rate in faults.error_rates.items():
                if self._rng.random() < rate:
                    return faults.latency_s, code
            return faults.latency_s, None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _graph_time(iso: str) -> str:
    # Graph writes times as 2026-11-27T21:10:00+0000.
    return datetime.fromisoformat(iso).strftime("%Y-%m-%dT%H:%M:%S%z")


def _encode_cursor(photo_id: str) -> str:
    return base64.urlsafe_b64encode(photo_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise GraphFault(100, "Invalid cursor") from None


def _image_format(head: bytes) -> str | None:
    for signature, name in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _error_template(code: int) -> tuple[int, str, bool | None]:
    if code in GRAPH_ERRORS:
        return GRAPH_ERRORS[code]
    if code in THROTTLE_CODES:
        return GRAPH_ERRORS[80001]
    return 400, "Simulated error", False


def _fault_for_code(code: int) -> Exception:
    """A configured error_rates key as the exception to raise."""
    if code in GRAPH_ERRORS or code in THROTTLE_CODES:
        return GraphFault(code)
    if 400 <= code < 600:
        # Not a Graph code: answer like a proxy in front of Graph would, with no Graph body.
        return PlainHttpFault(code)
    return GraphFault(code)


def _discard_body() -> None:
    """Read and drop the request body without parsing it.

    We refuse some uploads before parsing; reading the rest lets the client finish sending and
    see our error instead of a reset connection. Huge bodies are left unread on purpose.
    """
    length = request.content_length or 0
    if length > MAX_DRAIN_BYTES:
        return
    stream = LimitedStream(request.environ["wsgi.input"], length)
    while stream.read(READ_CHUNK):
        pass


def _request_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in {"bearer", "oauth"} and value.strip():
        return value.strip()
    return request.values.get("access_token")


def _check_version(version: str) -> None:
    if not VERSION_RE.fullmatch(version):
        raise GraphFault(2500, f"Unknown path components: /{version}")


def _inspect_image(upload: FileStorage) -> tuple[int, str, str, tuple[int, int] | None]:
    """Size, sha256, format and pixel size of an uploaded part, read in chunks (big parts are
    on disk); the pixels from the header (Pillow), as Facebook reports `width` and `height`."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    while chunk := upload.stream.read(READ_CHUNK):
        if len(head) < HEADER_BYTES:
            head += chunk[: HEADER_BYTES - len(head)]
        size += len(chunk)
        digest.update(chunk)
        if size > MAX_IMAGE_BYTES:
            raise GraphFault(
                324,
                "Missing or invalid image file: the photo is larger than 10 MB",
                subcode=TOO_LARGE_SUBCODE,
            )
    if size == 0:
        raise GraphFault(324, "Requires upload file")
    image_format = _image_format(head)
    if image_format is None:
        raise GraphFault(
            324,
            "Missing or invalid image file: unsupported image format "
            "(expected JPEG, PNG, GIF, BMP or TIFF)",
        )
    return size, digest.hexdigest(), image_format, _pixel_size(head)


def _pixel_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the image's header (Pillow parses it and decodes nothing)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge photo is refused by bytes, not pixels
            with PILImage.open(io.BytesIO(head)) as image:
                return image.size
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None


def _uploaded_file() -> FileStorage:
    # The docs say the part name does not matter; `source` is the conventional one.
    upload = request.files.get("source")
    if upload is None and request.files:
        upload = next(iter(request.files.values()))
    if upload is None:
        raise GraphFault(324, "Requires upload file")
    return upload


def _plain_response(status: int) -> Response:
    name = HTTP_STATUS_CODES.get(status, "Error")
    html = (
        f"<html><head><title>{status} {name}</title></head>"
        f"<body><center><h1>{status} {name}</h1></center></body></html>"
    )
    return Response(html, status=status, mimetype="text/html")


def _page_html(state: SimState) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(photo.get(key, '')))}</td>"
            for key in ("id", "album_id", "filename", "caption", "size", "sha256", "received_at")
        )
        + "</tr>"
        for photo in state.photos()
    )
    return (
        "<!doctype html><title>Graph simulator</title><h1>Received photos</h1>"
        "<table border=1><tr><th>id</th><th>album</th><th>file</th><th>caption</th>"
        f"<th>bytes</th><th>sha256</th><th>received</th></tr>{rows}</table>"
    )


def create_app(
    page_id: str,
    page_token: str,
    app_id: str = DEFAULT_APP_ID,
    app_secret: str = DEFAULT_APP_SECRET,
    page: PageSettings | None = None,
) -> Flask:
    """A Flask app simulating Graph: the Page `page_id` (token `page_token`) of the fake
    user the login dialog approves by default, more Pages and users added through /_sim/pages,
    and Facebook Login for the app `app_id`. `page`: how the Pages behave (album creation,
    unpublished photos' lifetime)."""
    app = Flask(__name__)
    # Werkzeug then refuses oversized chunked bodies too, not just ones with a Content-Length.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    state = SimState(page)
    app.extensions["graph_simulator"] = state
    pages = SimPages(app_id, app_secret)
    pages.add_page(page_id, "Demo Page", DEFAULT_USER, page_token)
    app.extensions["graph_simulator_pages"] = pages

    def require_token(node_page: str | None, write: bool = False) -> None:
        """The request's token must be `node_page`'s Page token (the Page, or the Page that
        owns the album), as Facebook checks it on every call."""
        try:
            pages.check(_request_token(), node_page or "", write)
        except PageAccessError as exc:
            raise GraphFault(exc.code, exc.detail, subcode=exc.subcode) from None

    def apply_faults(endpoint: str) -> None:
        latency, code = state.draw_fault(endpoint)
        if latency:
            time.sleep(latency)
        if code is not None:
            raise _fault_for_code(code)

    @app.before_request
    def _start() -> None:
        g.trace_id = secrets.token_urlsafe(8)[:11]
        version = (request.view_args or {}).get("version", "")
        g.version = version if VERSION_RE.fullmatch(version) else DEFAULT_VERSION

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["facebook-api-version"] = g.get("version", DEFAULT_VERSION)
        response.headers["x-fb-trace-id"] = g.get("trace_id", "")
        if "X-Business-Use-Case-Usage" not in response.headers:  # a throttle sets its own
            _add_usage_headers(response, page_id, state.faults)
        return response

    @app.errorhandler(GraphFault)
    def _graph_fault(fault: GraphFault) -> Response:
        status, default_detail, is_transient = _error_template(fault.code)
        error: dict[str, Any] = {
            "message": f"(#{fault.code}) {fault.detail or default_detail}",
            "type": fault.error_type,
            "code": fault.code,
        }
        if fault.subcode is not None:
            error["error_subcode"] = fault.subcode
        if is_transient is not None:
            error["is_transient"] = is_transient
        error["fbtrace_id"] = g.get("trace_id", "")
        response = jsonify({"error": error})
        response.status_code = status
        if fault.code in THROTTLE_CODES:
            _add_throttle_headers(response, page_id, state.faults.throttle_minutes)
        return response

    @app.errorhandler(PlainHttpFault)
    def _plain_fault(fault: PlainHttpFault) -> Response:
        return _plain_response(fault.status)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Response:
        return _graph_fault(
            GraphFault(
                324,
                "Missing or invalid image file: the request is too large",
                subcode=TOO_LARGE_SUBCODE,
            )
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if request.path.startswith("/_sim/"):
            response = jsonify({"error": exc.description})
            response.status_code = exc.code or 500
            return response
        if exc.code == 405:
            return _graph_fault(
                GraphFault(
                    100,
                    f"Unsupported {request.method.lower()} request",
                    error_type="GraphMethodException",
                )
            )
        if exc.code == 404:
            return _graph_fault(GraphFault(2500, f"Unknown path components: {request.path}"))
        return _graph_fault(GraphFault(100, exc.description))

    @app.post("/<version>/<node>/albums")
    def create_album(version: str, node: str) -> Response:
        _check_version(version)
        if pages.page(node) is None:
            raise GraphFault(
                100,
                f"Unsupported post request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation",
                subcode=33,
                error_type="GraphMethodException",
            )
        require_token(node, write=True)
        apply_faults("albums")
        if state.page.refuse_album_creation:
            raise GraphFault(200, ALBUM_CREATION_REFUSED)
        name = request.values.get("name", "").strip()
        if not name:
            raise GraphFault(100, "param name must be non-empty")
        album = state.add_album(name, request.values.get("message"), node)
        return jsonify({"id": album["id"]})

    @app.post("/<version>/<node>/photos")
    def upload_photo(version: str, node: str) -> Response:
        _check_version(version)
        state.note_upload(request.content_length or 0)
        # Decide on the declared size before werkzeug parses (and spools) the body.
        if (request.content_length or 0) > MAX_BODY_BYTES:
            _discard_body()
            raise GraphFault(
                324,
                "Missing or invalid image file: the request is larger than 10 MB",
                subcode=TOO_LARGE_SUBCODE,
            )
        published = request.values.get("published", "true").lower() not in {"false", "0"}
        if pages.page(node) is not None:
            # The Page itself: an unpublished photo, for a multi-photo post. A published
            # Page photo would be a post of its own: not simulated.
            if published:
                raise GraphFault(
                    100,
                    "Invalid parameter: this simulator takes only "
                    "published=false photos on the Page itself",
                )
        elif not state.has_album(node):
            raise GraphFault(120)
        album_page = node if pages.page(node) is not None else state.album_page(node)
        require_token(album_page, write=True)
        upload = _uploaded_file()
        apply_faults("photos")
        filename = upload.filename or ""
        if any(part in filename for part in state.faults.reject_filenames):
            raise GraphFault(324, "Missing or invalid image file: rejected image")
        size, sha256, image_format, pixels = _inspect_image(upload)
        photo = state.add_photo(
            album_page or page_id,
            album_id=node,
            page=album_page,
            size=size,
            sha256=sha256,
            format=image_format,
            width=pixels[0] if pixels else None,
            height=pixels[1] if pixels else None,
            caption=request.form.get("caption", ""),
            filename=filename,
            content_type=upload.mimetype,
            published=published,
        )
        if not published:
            return jsonify({"id": photo["id"]})
        return jsonify({"id": photo["id"], "post_id": photo["post_id"]})

    @app.post("/<version>/<node>/feed")
    def create_post(version: str, node: str) -> Response:
        _check_version(version)
        if pages.page(node) is None:
            raise GraphFault(
                100,
                f"Unsupported post request. Object with ID '{node}' does not exist",
                subcode=33,
                error_type="GraphMethodException",
            )
        require_token(node, write=True)
        apply_faults("feed")
        media = _attached_media()
        post = state.add_post(node, request.values.get("message", ""), media)
        return jsonify({"id": post["id"]})

    @app.get("/<version>/<node>/posts")
    def list_posts(version: str, node: str) -> Response:
        _check_version(version)
        if pages.page(node) is None:
            raise GraphFault(
                100,
                f"Unsupported get request. Object with ID '{node}' does not exist",
                subcode=33,
                error_type="GraphMethodException",
            )
        require_token(node)
        apply_faults("list")
        # Newest first, as a Page's feed reads.
        return jsonify(_post_page(list(reversed(state.posts(node)))))

    @app.get("/<version>/<node>/photos")
    def list_photos(version: str, node: str) -> Response:
        _check_version(version)
        if not state.has_album(node):
            raise GraphFault(
                100,
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation",
                subcode=33,
                error_type="GraphMethodException",
            )
        require_token(state.album_page(node))
        apply_faults("list")
        return jsonify(_photo_page(state.album_photos(node)))

    @app.get("/<version>/<node>/albums")
    def list_albums(version: str, node: str) -> Response:
        _check_version(version)
        if pages.page(node) is None:
            raise GraphFault(
                100,
                f"Unsupported get request. Object with ID '{node}' does not exist",
                subcode=33,
                error_type="GraphMethodException",
            )
        require_token(node)
        apply_faults("list")
        return jsonify(_album_page(state.albums(node)))

    # -- Facebook Login (docs/facebook-login.md) -----------------------------------------------

    @app.get("/<version>/dialog/oauth")
    def login_dialog(version: str) -> Any:
        """The login dialog, approved at once by the simulator's signed-in user: back to
        redirect_uri with a code and the caller's state."""
        _check_version(version)
        redirect_uri = request.args.get("redirect_uri", "")
        try:
            code = pages.authorize(request.args.get("client_id", ""), redirect_uri)
        except PageAccessError as exc:
            raise GraphFault(exc.code, exc.detail, subcode=exc.subcode) from None
        query = urlencode({"code": code, "state": request.args.get("state", "")})
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(f"{redirect_uri}{separator}{query}#_=_")

    @app.get("/<version>/oauth/access_token")
    def access_token(version: str) -> Response:
        _check_version(version)
        args = request.args
        try:
            if args.get("grant_type") == "fb_exchange_token":
                body = pages.exchange_long_lived(
                    args.get("client_id", ""),
                    args.get("client_secret", ""),
                    args.get("fb_exchange_token", ""),
                )
            else:
                body = pages.exchange_code(
                    args.get("client_id", ""),
                    args.get("client_secret", ""),
                    args.get("redirect_uri", ""),
                    args.get("code", ""),
                )
        except PageAccessError as exc:
            raise GraphFault(exc.code, exc.detail, subcode=exc.subcode) from None
        return jsonify(body)

    @app.get("/<version>/me/accounts")
    def me_accounts(version: str) -> Response:
        _check_version(version)
        try:
            accounts = pages.accounts(_request_token())
        except PageAccessError as exc:
            raise GraphFault(exc.code, exc.detail, subcode=exc.subcode) from None
        return jsonify({"data": accounts})

    @app.get("/_sim/pages")
    def sim_pages() -> Response:
        return jsonify(
            {
                "login_user": pages.login_user,
                "pages": [
                    {"id": p.id, "name": p.name, "owner": p.owner, "blocked": p.blocked}
                    for p in pages.pages()
                ],
            }
        )

    @app.post("/_sim/pages")
    def sim_add_page() -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        page_id, owner = str(body.get("id") or ""), str(body.get("owner") or "")
        if not page_id.isdigit() or not owner:
            return jsonify({"error": "id (digits) and owner are required"}), 400
        page = pages.add_page(
            page_id, str(body.get("name") or f"Page {page_id}"), owner, body.get("token")
        )
        return jsonify({"id": page.id, "name": page.name, "owner": page.owner}), 201

    @app.put("/_sim/login")
    def sim_login() -> Response:
        """Who the login dialog approves as next (the browser's Facebook user)."""
        pages.login_user = str((request.get_json(silent=True) or {}).get("user") or DEFAULT_USER)
        return jsonify({"login_user": pages.login_user})

    @app.post("/_sim/pages/<node>/<action>")
    def sim_page_action(node: str, action: str) -> tuple[Response, int]:
        """revoke: the Page's token gets 190 from now on (a new login hands out another);
        block / unblock: writes to the Page get 368."""
        if action == "revoke":
            found = pages.revoke(node)
        elif action in {"block", "unblock"}:
            found = pages.set_blocked(node, action == "block")
        else:
            return jsonify({"error": "action is revoke, block or unblock"}), 400
        if not found:
            return jsonify({"error": f"no Page {node}"}), 404
        return jsonify({"id": node, "done": action}), 200

    @app.get("/_sim/")
    def sim_page() -> str:
        return _page_html(state)

    @app.get("/_sim/photos")
    def sim_photos() -> Response:
        return jsonify({"photos": state.photos(request.args.get("album_id"))})

    @app.get("/_sim/uploads")
    def sim_uploads() -> Response:
        return jsonify(state.uploads())

    @app.get("/_sim/albums")
    def sim_albums() -> Response:
        return jsonify({"albums": state.albums()})

    @app.post("/_sim/albums")
    def sim_add_album() -> tuple[Response, int]:
        # Albums are made by hand in the Page UI nowadays; this is the operator's shortcut.
        body = request.get_json(silent=True) or {}
        name = str(body.get("name") or "").strip()
        if not name:
            return jsonify({"error": "name is required"}), 400
        return jsonify(
            state.add_album(name, body.get("message"), str(body.get("page_id") or page_id))
        ), 201

    @app.get("/_sim/posts")
    def sim_posts() -> Response:
        return jsonify({"posts": state.posts()})

    @app.get("/_sim/page")
    def sim_page_settings() -> Response:
        return jsonify(state.page.to_json())

    @app.put("/_sim/page")
    def sim_set_page() -> tuple[Response, int]:
        try:
            state.page = state.page.updated(request.get_json(force=True, silent=True))
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify(state.page.to_json()), 200

    @app.post("/_sim/reset")
    def sim_reset() -> Response:
        state.reset()
        return jsonify({"ok": True})

    @app.get("/_sim/faults")
    def sim_faults() -> Response:
        return jsonify(state.faults.to_json())

    @app.put("/_sim/faults")
    def sim_set_faults() -> tuple[Response, int]:
        try:
            faults = Faults.from_json(request.get_json(force=True, silent=True))
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        state.set_faults(faults)
        return jsonify(faults.to_json()), 200

    return app


def _add_throttle_headers(response: Response, page_id: str, minutes: int) -> None:
    # Meta reports usage as percentages; 100 on any field means "throttled".
    response.headers["X-App-Usage"] = json.dumps(
        {"call_count": 100, "total_cputime": 40, "total_time": 45}
    )
    usage = {
        "type": "pages",
        "call_count": 100,
        "total_cputime": 40,
        "total_time": 45,
        "estimated_time_to_regain_access": minutes,
    }
    response.headers["X-Business-Use-Case-Usage"] = json.dumps({page_id: [usage]})


def _add_usage_headers(response: Response, page_id: str, faults: Faults) -> None:
    # Facebook sends them "once enough calls have been made"; here: once usage is set.
    if faults.app_usage_pct:
        response.headers["X-App-Usage"] = json.dumps(
            {"call_count": faults.app_usage_pct, "total_cputime": 1, "total_time": 1}
        )
    if faults.page_usage_pct:
        page = {"call_count": faults.page_usage_pct, "total_cputime": 1, "total_time": 1}
        response.headers["X-Page-Usage"] = json.dumps(page)
        response.headers["X-Business-Use-Case-Usage"] = json.dumps(
            {page_id: [{"type": "pages", **page, "estimated_time_to_regain_access": 0}]}
        )


def _photo_page(photos: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of album photos, shaped and paged the way Graph does it."""
    fields = _requested_fields(LIST_FIELDS, "Photo")
    return _paged(photos, lambda photo: _photo_fields(photo, fields))


def _post_page(posts: list[dict[str, Any]]) -> dict[str, Any]:
    fields = _requested_fields(POST_FIELDS, "Post")
    return _paged(posts, lambda post: _post_fields(post, fields))


def _post_fields(post: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    # Graph shows a multi-photo post's photos as subattachments whose target is the photo.
    photos = [{"type": "photo", "target": {"id": fbid}} for fbid in post["attached_media"]]
    values = {
        "id": post["id"],
        "message": post["message"] or None,
        "created_time": _graph_time(post["created_at"]),
        "attachments": {"data": [{"type": "album", "subattachments": {"data": photos}}]},
    }
    return {name: values[name] for name in fields if values[name] is not None}


def _attached_media() -> list[str]:
    """`attached_media[0]={"media_fbid":"..."}`, `attached_media[1]=...` as Graph takes them."""
    items: list[tuple[int, str]] = []
    for key, raw in request.values.items():
        match = re.fullmatch(r"attached_media\[(\d+)\]", key)
        if not match:
            continue
        try:
            fbid = json.loads(raw)["media_fbid"]
        except (ValueError, TypeError, KeyError):
            detail = f'Invalid parameter: {key} must be {{"media_fbid": id}}'
            raise GraphFault(100, detail) from None
        items.append((int(match.group(1)), str(fbid)))
    if not items:
        raise GraphFault(100, "Invalid parameter: attached_media is required")
    return [fbid for _, fbid in sorted(items)]


def _album_page(albums: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of the page's albums; an album's creation `message` reads as `description`."""
    fields = _requested_fields(ALBUM_FIELDS, "Album")
    return _paged(albums, lambda album: _album_fields(album, fields))


def _paged(
    items: list[dict[str, Any]], shape: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    limit = _requested_limit()
    start = 0
    after = request.args.get("after")
    if after:
        after_id = _decode_cursor(after)
        ids = [item["id"] for item in items]
        if after_id not in ids:
            raise GraphFault(100, "Invalid cursor")
        start = ids.index(after_id) + 1
    page = items[start : start + limit]
    body: dict[str, Any] = {"data": [shape(item) for item in page]}
    if page:
        cursors = {"before": _encode_cursor(page[0]["id"]), "after": _encode_cursor(page[-1]["id"])}
        body["paging"] = {"cursors": cursors}
        if start + limit < len(items):
            body["paging"]["next"] = _next_url(cursors["after"])
    return body


def _requested_fields(known: tuple[str, ...], node_type: str) -> list[str]:
    raw = request.args.get("fields")
    if not raw:
        return list(known)
    fields = [name.strip() for name in raw.split(",") if name.strip()]
    for name in fields:
        if name not in known:
            raise GraphFault(
                100, f"Tried accessing nonexisting field ({name}) on node type ({node_type})"
            )
    return fields


def _requested_limit() -> int:
    try:
        limit = int(request.args.get("limit", DEFAULT_LIST_LIMIT))
    except ValueError:
        raise GraphFault(100, "Param limit must be a number") from None
    return max(1, min(limit, MAX_LIST_LIMIT))


def _photo_fields(photo: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    # Graph returns a photo's caption as `name`, and leaves out fields that have no value.
    values = {
        "id": photo["id"],
        "name": photo["caption"] or None,
        "created_time": _graph_time(photo["received_at"]),
        "width": photo.get("width"),
        "height": photo.get("height"),
        "images": (
            [{"width": photo["width"], "height": photo["height"]}] if photo.get("width") else None
        ),
    }
    return {name: values[name] for name in fields if values[name] is not None}


def _album_fields(album: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    values = {
        "id": album["id"],
        "name": album["name"],
        "description": album["message"] or None,
        "created_time": _graph_time(album["created_at"]),
    }
    return {name: values[name] for name in fields if values[name] is not None}


def _next_url(after: str) -> str:
    # Like Graph, keep the caller's query (fields, limit, ...) and move the cursor.
    query = [(k, v) for k, v in request.args.items(multi=True) if k not in {"after", "before"}]
    query.append(("after", after))
    return f"{request.base_url}?{urlencode(query)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Facebook Graph API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("GRAPH_SIM_PORT", DEFAULT_PORT))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    page_id = os.environ.get("FACEBOOK_PAGE_ID") or DEFAULT_PAGE_ID
    app = create_app(
        page_id,
        os.environ.get("FACEBOOK_PAGE_TOKEN") or DEFAULT_PAGE_TOKEN,
        os.environ.get("FACEBOOK_APP_ID") or DEFAULT_APP_ID,
        os.environ.get("FACEBOOK_APP_SECRET") or DEFAULT_APP_SECRET,
        PageSettings.from_env(),
    )
    # waitress keeps connections alive as the Graph API does (Werkzeug's development server
    # closes each one, a cost the real API never charges); its threads cover a busy
    # uploader's concurrent uploads, each held for the configured latency.
    server = waitress.create_server(
        app,
        host=args.host,
        port=args.port,
        threads=64,
        ident="graph-simulator",
        inbuf_overflow=64 * 1024 * 1024,
    )
    log.info(
        "Graph simulator for page %s on http://%s:%s (control API under /_sim/)",
        page_id,
        args.host,
        server.effective_port,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
