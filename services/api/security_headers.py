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


def common_headers(https: bool) -> list[tuple[str, str]]:
    """What every answer carries unless it says otherwise (`https`: it reaches the browser
    over https): the app's, and the server's own refusals (services/api/request_limits.py)."""
    # Every answer is one user's data or may become it: never from a shared cache, and never
    # shown again from history after sign-out.
    headers = [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", API_CSP),
        ("Referrer-Policy", "same-origin"),
    ]
    if https:
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


def install(app: Flask, settings: ApiSettings) -> None:
    # Built once for each answer to "over https?", not for every request.
    common = {https: common_headers(https) for https in (False, True)}

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        for name, value in common[over_https(settings)]:
            headers.setdefault(name, value)
        if response.status_code == 401 and request.path.startswith("/api/"):
            headers.setdefault("WWW-Authenticate", _challenge())
        return response


def _challenge() -> str:
    """RFC 6750: a request that sent a token it was refused for hears `invalid_token`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return f'{REALM}, error="invalid_token"'
    return REALM
