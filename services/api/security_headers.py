"""Headers every answer carries: nothing private in a shared cache, no MIME sniffing, no
framing, HSTS over https, and the way to authenticate on a 401 of the JSON API.

Set with `setdefault`, so a view (thumbnails: a private cache) or a blueprint (the pages'
Content-Security-Policy, services/api/page_guards.py) that said otherwise keeps its own.
"""

from __future__ import annotations

from flask import Flask, Response, request

from .sessions import over_https
from .settings import ApiSettings

#: For answers that are no page: nothing to load, nothing may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HSTS = "max-age=31536000"
REALM = 'Bearer realm="album-publisher"'


def install(app: Flask, settings: ApiSettings) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        # Every answer is one user's data or may become it: never from a shared cache, and
        # never shown again from history after sign-out.
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Content-Security-Policy", API_CSP)
        headers.setdefault("Referrer-Policy", "same-origin")
        if over_https(settings):
            headers.setdefault("Strict-Transport-Security", HSTS)
        if response.status_code == 401 and request.path.startswith("/api/"):
            headers.setdefault("WWW-Authenticate", _challenge())
        return response


def _challenge() -> str:
    """RFC 6750: a request that sent a token it was refused for hears `invalid_token`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return f'{REALM}, error="invalid_token"'
    return REALM
