"""What every web page blueprint shares (the album pages, Page connection, the operator desk):
the signed-in user, CSRF on every POST, the pages' security headers, HTML error pages."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from shared.store import UserView

from . import rate_limits, sessions
from .api_errors import wants_json
from .services import current_services


def guard(blueprint: Blueprint) -> None:
    """Give a blueprint of web pages the guards below."""
    blueprint.before_request(check_csrf)
    blueprint.after_request(security_headers)
    blueprint.register_error_handler(HTTPException, error_page)
    blueprint.context_processor(template_globals)


#: Where a request keeps who signed it in, once read (`current_user`).
_USER_KEY = "album_publisher.session_user"


def current_user() -> UserView | None:
    """The signed-in user, read from the store once per request: a POST asks twice (the
    CSRF check, then the view's guard). Kept with the request, not in `g`, which a request
    shares with any other pushed on the same application context (a live stream's)."""
    environ = request.environ
    if _USER_KEY not in environ:
        environ[_USER_KEY] = sessions.current_user(
            current_services().store, current_services().settings
        )
    user: UserView | None = environ[_USER_KEY]
    return user


#: The mark `signed_in` leaves on a view.
NEEDS_SIGN_IN = "needs_sign_in"
SIGN_IN_FIRST = "Sign in first."


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages send a stranger to the sign-in page (and back afterwards); the rest say 401."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            # HEAD answers as GET does (RFC 9110, 9.3.2).
            if request.method in ("GET", "HEAD") and request.accept_mimetypes.accept_html:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            abort(401, SIGN_IN_FIRST)
        g.user = user
        return view(*args, **kwargs)

    setattr(wrapper, NEEDS_SIGN_IN, True)  # read by check_csrf; functools.wraps carries it out
    return wrapper


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_csrf() -> None:
    # SameSite=Lax already keeps other sites' POSTs cookie-less; the token also stops a
    # same-site page (another app on this host) from posting in the user's name.
    if request.method != "POST":
        return
    if _needs_sign_in() and current_user() is None:
        # A stranger (often no session, so no token either): the 401 the pages promise for a
        # POST, before the token is looked at. Nothing is done for them either way; a
        # signed-in session still needs its token, below.
        abort(401, SIGN_IN_FIRST)
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
        abort(400, "This form has expired. Reload the page and try again.")


def _needs_sign_in() -> bool:
    """Whether the view this request goes to is behind `signed_in`."""
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, NEEDS_SIGN_IN, False))


def template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "user": g.get("user")}


def security_headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    # The rest (no-store, nosniff, the referrer policy) every answer gets from
    # security_headers.py.
    return response


def error_page(exc: HTTPException) -> Any:
    status = exc.code or 500
    message, headers = rate_limits.refusal(exc)
    if wants_json(request.path, request.accept_mimetypes):
        return {"error": message}, status, headers
    return (
        render_template(
            "error.html", status=status, title=exc.name, message=message + ("." if headers else "")
        ),
        status,
        headers,
    )
