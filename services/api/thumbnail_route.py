"""Thumbnails of the caller's own bucket objects for the pages: the bucket stays private."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, g, request

from .page_guards import signed_in
from .services import current_services
from .thumbnails import NOT_STORED, Busy, MissingObject
from .validation import key_is_callers

#: Seconds a thumbnail request refused for load is told to wait (Retry-After).
THUMBNAIL_RETRY_S = 2


@signed_in
def thumbnail(key: str) -> Any:
    # Only the caller's own objects, and only as small previews: the bucket stays private.
    if not key_is_callers(key, g.user.prefix):
        abort(404)
    services = current_services()
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
        # Still a 404, with a picture a page's <img> shows (a browser draws an image body
        # whatever the status), where it drew a broken-image icon.
        return Response(NOT_STORED, status=404, mimetype="image/svg+xml")
    except Busy:
        return (
            {"error": "too many thumbnails are being made right now; try again shortly"},
            503,
            {"Retry-After": str(THUMBNAIL_RETRY_S)},
        )
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
