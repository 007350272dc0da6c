"""The JSON API's error answers: `{"error": reason}` for every refusal, an error id for a bug
of ours, a 503 while the store is away. `install` hands them to the app."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException, InternalServerError

from shared.observability import error_ids

from . import rate_limits
from .idempotency import HEADER

log = logging.getLogger(__name__)


class ErrorLoggingFlask(Flask):
    """Flask, without its own "Exception on ..." record of an unhandled exception: the 500
    handler (`_internal_error`) logs it, once, under the error id the caller is given."""

    def log_exception(self, exc_info: Any) -> None:
        return


def wants_json(path: str, accept: MIMEAccept) -> bool:
    """Whether an error answer is the JSON API's `{"error": ...}` rather than a page: on the
    JSON API, or for a client that prefers JSON (the app's answers and the server's own)."""
    return path.startswith("/api/") or accept.best == "application/json"


def install(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    # By its code, so that it also serves the web pages (their handler is for HTTPException).
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(DBAPIError, _store_unavailable)


def error_response(status: int, reason: str, details: list[str] | None = None) -> tuple[Any, int]:
    body: dict[str, Any] = {"error": reason}
    if details:
        body["details"] = details
    return jsonify(body), status


def _http_error(exc: HTTPException) -> Any:
    reason, retry_after = rate_limits.refusal(exc)
    response, status = error_response(exc.code or 500, reason)
    # The exception's own headers are part of the answer: a 405's Allow (RFC 9110 requires
    # it), a 429's Retry-After. Its Content-Type was for the HTML body this replaces.
    for name, value in [*exc.get_headers(), *retry_after.items()]:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


def _internal_error(exc: InternalServerError) -> tuple[Any, int]:
    """A bug of ours: the detail goes to the log under an error id, the caller gets the id."""
    error_id = error_ids.logged(
        log, f"{request.method} {request.path} failed", exc.original_exception or exc, logging.ERROR
    )
    reason = f"{error_ids.INTERNAL} (error id {error_id}); try again, or quote the id to support"
    if wants_json(request.path, request.accept_mimetypes):
        return jsonify({"error": reason, "error_id": error_id}), 500
    return render_template(
        "error.html",
        status=500,
        title="Something went wrong",
        message=reason[:1].upper() + reason[1:] + ".",
    ), 500


def _store_unavailable(exc: DBAPIError) -> tuple[Any, int]:
    # Raised before or at a commit, never after one (record_and_send). A commit the
    # connection broke in may still have happened, so this does not say "nothing was
    # accepted": a client repeats a POST with the same Idempotency-Key to find out.
    log.error("store unavailable: %s", exc.__class__.__name__)
    return error_response(
        503,
        "the store is unavailable; try again shortly (a POST sent with an "
        f"{HEADER} header is safe to repeat with the same key)",
    )
