"""The web pages' sign-in session: who it is, since when, and whether it was revoked since.

The cookie is signed (Flask's itsdangerous serializer) with API_SECRET_KEY, and carries the
user id, the time of the sign-in and the user's session generation at that time. A session is
refused once it is older than API_SESSION_DAYS (counted from the sign-in: using the site does
not extend it) or once the generation moved on: sign-out and a new token bump it
(`Store.end_sessions`, `Store.rotate_token`), so a copied cookie dies with them.

Over https (or when the deployment says it is behind https: APP_ENV=production,
API_COOKIE_SECURE) the cookie is Secure and named with the __Host- prefix, which browsers
accept only from a secure origin, for the whole host (no Domain) and path /.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from shared.store import Store, UserView

from .settings import ApiSettings

COOKIE_NAME = "albums_session"
SECURE_COOKIE_NAME = f"__Host-{COOKIE_NAME}"


def over_https(settings: ApiSettings) -> bool:
    """Whether this answer reaches the browser over https (directly, or through a proxy the
    settings vouch for)."""
    return request.is_secure or settings.cookies_secure


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, named and flagged per request, expiring with its sign-in."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings

    def get_cookie_name(self, app: Flask) -> str:
        return SECURE_COOKIE_NAME if over_https(self._settings) else COOKIE_NAME

    def get_cookie_secure(self, app: Flask) -> bool:
        return over_https(self._settings)

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        issued = session.get("issued")
        if not session.permanent or not isinstance(issued, int | float):
            return super().get_expiration_time(app, session)
        return datetime.fromtimestamp(issued, UTC) + lifetime(self._settings)


def lifetime(settings: ApiSettings) -> timedelta:
    return timedelta(days=settings.api_session_days)


def begin(user: UserView) -> None:
    """A fresh session (and CSRF token) for the user who just signed in."""
    session.clear()
    session.permanent = True
    session.update(user_id=user.id, gen=user.session_generation, issued=int(time.time()))


def current_user(store: Store, settings: ApiSettings) -> UserView | None:
    """The signed-in user, or None (a stale or revoked session is cleared on the way)."""
    user_id, issued = session.get("user_id"), session.get("issued")
    if not isinstance(user_id, int):
        return None
    user = store.user(user_id)
    fresh = isinstance(issued, int) and time.time() - issued < lifetime(settings).total_seconds()
    if user is None or not fresh or session.get("gen") != user.session_generation:
        session.clear()
        return None
    return user


def end(store: Store, user: UserView | None) -> None:
    """Sign out here and everywhere else: every cookie issued to the user so far is refused.

    Only a valid session may do that: an old cookie cannot sign its user out again."""
    if user is not None:
        store.end_sessions(user.id)
    session.clear()
