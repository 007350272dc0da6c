"""Decide what a failed upload attempt means: retry soon, wait out a throttle, ask the user to
reconnect, or give up on this photo.

Pure classification, no I/O. Graph failures are judged by Graph error code first (Meta reuses
HTTP statuses loosely and throttling responses rarely say `is_transient`); the code families
and what to do with each are in docs/graph-errors.md.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging

import requests
import urllib3.exceptions
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from services.uploader.photo_limits import OverPhotoLimit
from shared.adapters.graph_client import (
    GraphError,
    GraphNetworkError,
    SourceTruncatedError,
    graph_text,
)
from shared.contracts import dead_letters
from shared.observability import error_ids
from shared.policies.retry_policy import Failure, FailureKind

log = logging.getLogger(__name__)

#: The Graph codes that stop a whole Page, not one call: its token refused (expired or revoked),
#: or the Page blocked by Facebook for a policy breach. Photos and the post pause on them.
TOKEN_REFUSED, PAGE_BLOCKED = 190, 368
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
AUTH_CODES = frozenset({190, 102, 10, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2, 341})

THROTTLE_SUBJECTS = {4: "this app", 17: "this user", 613: "these calls"}

TRANSIENT_REASONS = {
    1: "Facebook had an unknown, probably temporary, error",
    2: "Facebook had a temporary service error",
    341: "Facebook's temporary application limit was reached",
}

PERMANENT_REASONS = {
    3: "the Facebook app lacks the capability for this call",
    120: "the Facebook album id is invalid",
    220: "the Facebook album is not visible to this page",
    321: "the Facebook album is full",
    368: "Facebook temporarily blocked this page for policy reasons; publishing stopped",
    506: "Facebook refused a duplicate post",
}

S3_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}
)
S3_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

#: OSErrors that mean the program or its setup is wrong, not that the network hiccupped.
LOCAL_OS_ERRORS = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)

#: Connection-level failures talking to S3: botocore wraps the urllib3 ones in these.
S3_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError)

#: Connection-level failures from HTTP libraries used directly.
NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    http.client.HTTPException,
)


class AlbumBeingCreated(Exception):
    """Another worker is creating this album on Facebook; try the image again shortly."""


class DuplicateNotFound(Exception):
    """Facebook answered 506 (a duplicate post: it has this photo already), yet reading the
    album back (caption, size, time) did not find it: it may be listed later, so try again."""


#: Graph codes that refuse creating a Page album for good (the endpoint is gone: capability,
#: deprecated, unsupported request, permission): the album falls back to one multi-photo post.
#: Not 190/102 (the token: the photos would fail as well) nor 220 (about an album).
ALBUM_CREATION_REFUSED_CODES = frozenset({3, 10, 12, 100, *range(200, 220), *range(221, 300)})


def album_creation_refused(exc: BaseException) -> str | None:
    """Why Facebook refused for good to create a Page album, or None when this failure is not
    such a refusal (a throttle, an outage, the token: those are handled as for a photo)."""
    if not isinstance(exc, GraphError) or exc.code not in ALBUM_CREATION_REFUSED_CODES:
        return None
    if exc.is_transient:
        return None
    return (
        f"Facebook refused to create an album ({graph_text(exc)}), so the photos go out as one "
        "multi-photo post instead"
    )


#: What a Graph answer of these kinds says: the request was refused, nothing was made.
_REFUSED_KINDS = frozenset({FailureKind.THROTTLED, FailureKind.AUTH, FailureKind.PERMANENT})


def may_have_landed(exc: BaseException) -> bool:
    """Whether a failed Graph write may still have been done: the answer was lost (a timeout,
    a connection cut after sending) or is no verdict (a 5xx, a transient Graph error)."""
    if isinstance(exc, GraphNetworkError):
        return exc.request_sent
    if isinstance(exc, GraphError):
        return _classify_graph(exc).kind not in _REFUSED_KINDS
    return isinstance(exc, NETWORK_ERRORS)


def classify(exc: BaseException) -> Failure:
    """The kind of failure `exc` is, with a reason fit to show the user, and whether the
    request may still take effect at Facebook (`in_doubt`)."""
    failure = _classify(exc)
    if failure.kind is FailureKind.TRANSIENT and _in_doubt(exc):
        return dataclasses.replace(failure, in_doubt=True)
    return failure


def _in_doubt(exc: BaseException) -> bool:
    """A Graph call that may still take effect (`may_have_landed`): the next attempt must not
    read the album back before it no longer can. S3 and local failures reach no Facebook."""
    return isinstance(exc, GraphError) and may_have_landed(exc)


def _classify(exc: BaseException) -> Failure:
    if isinstance(exc, AlbumBeingCreated):
        return Failure(FailureKind.TRANSIENT, "the album is being created on Facebook", None)
    if isinstance(exc, DuplicateNotFound):
        return Failure(
            FailureKind.TRANSIENT,
            "Facebook says this photo is already posted (code 506), but it is not in the album yet",
            506,
        )
    if isinstance(exc, OverPhotoLimit):
        return Failure(FailureKind.PERMANENT, exc.reason, None)
    if isinstance(exc, GraphNetworkError):
        return Failure(FailureKind.TRANSIENT, f"could not reach Facebook: {exc.cause}", None)
    if isinstance(exc, GraphError):
        return _classify_graph(exc)
    if isinstance(exc, ClientError):
        return _classify_s3(exc)
    if isinstance(exc, SourceTruncatedError):
        return Failure(FailureKind.TRANSIENT, "the file from the bucket ended early", None)
    # Below, the exception's text names our hosts and internals: logged under an error id.
    if isinstance(exc, S3_NETWORK_ERRORS):
        reason = error_ids.plain("could not read the file from the bucket", log, exc)
        return Failure(FailureKind.TRANSIENT, reason, None)
    if isinstance(exc, NETWORK_ERRORS):
        return Failure(FailureKind.TRANSIENT, error_ids.plain("a network error", log, exc), None)
    if _is_io_error(exc):
        reason = error_ids.plain("a read or write failed on our side", log, exc)
        return Failure(FailureKind.TRANSIENT, reason, None)
    reason = error_ids.plain(error_ids.INTERNAL, log, exc, logging.ERROR)
    return Failure(FailureKind.PERMANENT, reason, None)


def _is_io_error(exc: BaseException) -> bool:
    # requests' exceptions are OSErrors too, but the ones left here (InvalidURL, MissingSchema,
    # ...) are mistakes in our code or config; so are missing files and permissions.
    return isinstance(exc, OSError) and not isinstance(
        exc, (requests.RequestException, *LOCAL_OS_ERRORS)
    )


def _classify_graph(exc: GraphError) -> Failure:
    code = exc.code
    if code is None:
        return _classify_plain_http(exc)
    if code in THROTTLE_CODES or exc.http_status == 429:
        return _throttled(exc, code)
    if code == 324:
        return Failure(FailureKind.PERMANENT, _image_reason(exc), code)
    # Before the auth range: 220 (album not visible) sits inside 200-299 but is about the album.
    if code in PERMANENT_REASONS:
        return Failure(FailureKind.PERMANENT, f"{PERMANENT_REASONS[code]} (code {code})", code)
    if code in AUTH_CODES:
        return Failure(FailureKind.AUTH, _auth_reason(code), code)
    if code in TRANSIENT_CODES:
        return Failure(FailureKind.TRANSIENT, f"{TRANSIENT_REASONS[code]} (code {code})", code)
    # Unknown codes: trust Meta's is_transient flag, or a 5xx status, before giving up.
    if exc.is_transient or (exc.http_status or 0) >= 500:
        return Failure(
            FailureKind.TRANSIENT, f"Facebook had a temporary error: {graph_text(exc)}", code
        )
    return Failure(FailureKind.PERMANENT, f"Facebook refused the request: {graph_text(exc)}", code)


def _classify_plain_http(exc: GraphError) -> Failure:
    """A response without a Graph error body (a proxy or load balancer answered)."""
    status = exc.http_status
    if status == 429:
        return _throttled(exc, None)
    if status is None or status >= 500 or status == 408 or 200 <= status < 300:
        # 2xx here means an unreadable success body: the call may have worked, so check and retry.
        label = f"HTTP {status}" if status else "no response"
        return Failure(
            FailureKind.TRANSIENT, f"Facebook is temporarily unavailable ({label})", status
        )
    return Failure(FailureKind.PERMANENT, f"Facebook refused the request (HTTP {status})", status)


def _throttled(exc: GraphError, code: int | None) -> Failure:
    hints = [
        exc.regain_access_minutes * 60 if exc.regain_access_minutes is not None else None,
        exc.retry_after_s,
    ]
    # An estimate of 0 means "not blocked", which says nothing about when to retry.
    waits = [hint for hint in hints if hint is not None and hint > 0]
    subject = THROTTLE_SUBJECTS.get(code, "this page") if code is not None else "this page"
    label = f"code {code}" if code is not None else f"HTTP {exc.http_status}"
    return Failure(
        FailureKind.THROTTLED,
        f"Facebook is throttling {subject} ({label})",
        code if code is not None else exc.http_status,
        max(waits) if waits else None,
    )


def _auth_reason(code: int) -> str:
    if code in {190, 102}:
        return (
            f"Facebook no longer accepts the page's access token (code {code}); "
            "reconnect your Facebook page"
        )
    return (
        f"Facebook denied permission for this action (code {code}); "
        "reconnect your Facebook page and grant the requested permissions"
    )


def _image_reason(exc: GraphError) -> str:
    message = exc.message.lower()
    if exc.subcode == 2069019 or "too large" in message or "larger than" in message:
        detail = "the file is larger than 10 MB"
    elif "unsupported" in message or "format" in message:
        detail = "unsupported format"
    elif "requires upload file" in message:
        detail = "no image file was sent"
    elif "rejected" in message:
        detail = "rejected image"
    else:
        detail = "missing or invalid image file"
    return f"Facebook refused the image: {detail} (code 324)"


def _classify_s3(exc: ClientError) -> Failure:
    error = exc.response.get("Error", {})
    s3_code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if s3_code in S3_NOT_FOUND_CODES or status == 404:
        return Failure(FailureKind.PERMANENT, dead_letters.NOT_IN_BUCKET, status)
    if s3_code in S3_TRANSIENT_CODES or (status or 0) >= 500:
        return Failure(
            FailureKind.TRANSIENT, f"the bucket is temporarily unavailable ({s3_code})", status
        )
    if s3_code == "AccessDenied" or status == 403:
        return Failure(FailureKind.PERMANENT, dead_letters.BUCKET_DENIED, status)
    refused = f"{dead_letters.BUCKET_REFUSED} ({s3_code})"
    return Failure(FailureKind.PERMANENT, refused, status)
