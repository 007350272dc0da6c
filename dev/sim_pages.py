"""The Graph simulator's Facebook users, their Pages and tokens, and Facebook Login.

Pure state (no Flask): `dev/graph_simulator.py` serves it. Each Page has its own Page token,
checked on every call to the Page or its albums; a token can be revoked (the next call gets
190) and a Page blocked (writes get 368); logging in again through the dialog hands out a new
token, as Facebook does after a user re-authorises. What it follows is in
docs/facebook-login.md.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

#: Seconds a short-lived user token and a long-lived one are said to last (about two hours
#: and 60 days: docs/facebook-login.md).
SHORT_LIVED_S = 2 * 3600
LONG_LIVED_S = 60 * 24 * 3600
#: Graph's subcode for a token invalidated because the user changed their password or Facebook
#: ended the session; ours for "revoked by the test".
REVOKED_SUBCODE = 460
DEFAULT_USER = "sim-user-1"


class PageAccessError(Exception):
    """A call refused the way Graph would: its code, message detail and subcode."""

    def __init__(self, code: int, detail: str | None = None, subcode: int | None = None) -> None:
        super().__init__(code, detail)
        self.code, self.detail, self.subcode = code, detail, subcode


@dataclass
class SimPage:
    id: str
    name: str
    owner: str
    token: str
    revoked: set[str] = field(default_factory=set)
    blocked: bool = False


@dataclass
class _Grant:
    user: str
    client_id: str
    redirect_uri: str


class SimPages:
    def __init__(self, app_id: str, app_secret: str) -> None:
        self._lock = threading.Lock()
        self.app_id, self._app_secret = app_id, app_secret
        self._pages: dict[str, SimPage] = {}
        self._codes: dict[str, _Grant] = {}
        self._user_tokens: dict[str, str] = {}  # user token -> user
        #: Who the dialog logs in as (the browser's Facebook session, in the simulator).
        self.login_user = DEFAULT_USER

    def add_page(self, page_id: str, name: str, owner: str, token: str | None = None) -> SimPage:
        with self._lock:
            page = SimPage(page_id, name, owner, token or f"page-{secrets.token_urlsafe(16)}")
            self._pages[page_id] = page
            return page

    def page(self, page_id: str) -> SimPage | None:
        with self._lock:
            return self._pages.get(page_id)

    def pages(self) -> list[SimPage]:
        with self._lock:
            return list(self._pages.values())

    def check(self, token: str | None, page_id: str, write: bool) -> None:
        """Raise PageAccessError unless `token` is `page_id`'s current Page token (and, for
        a write, the Page is not blocked)."""
        with self._lock:
            if not token:
                raise PageAccessError(
                    190, "An active access token must be used to query this resource."
                )
            page = self._pages.get(page_id)
            if page is not None and token in page.revoked:
                raise PageAccessError(
                    190,
                    "Error validating access token: The session has been invalidated",
                    REVOKED_SUBCODE,
                )
            owner = next(
                (
                    p
                    for p in self._pages.values()
                    if secrets.compare_digest(p.token.encode(), token.encode())
                ),
                None,
            )
            if owner is None:
                raise PageAccessError(190)
            if page is None or owner.id != page_id:
                # Another Page's token: Facebook answers that the object cannot be reached.
                raise PageAccessError(
                    200, "Permissions error: this token is not for the Page that owns this object"
                )
            if write and page.blocked:
                raise PageAccessError(368)

    def revoke(self, page_id: str) -> bool:
        with self._lock:
            page = self._pages.get(page_id)
            if page is None:
                return False
            page.revoked.add(page.token)
            page.token = ""  # the next login hands out a new one
            return True

    def set_blocked(self, page_id: str, blocked: bool) -> bool:
        with self._lock:
            page = self._pages.get(page_id)
            if page is not None:
                page.blocked = blocked
            return page is not None

    # -- Facebook Login ------------------------------------------------------------------------

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """The dialog approved: a one-time code for this app and redirect_uri."""
        if client_id != self.app_id:
            raise PageAccessError(101, "Error validating application. Invalid application ID.")
        if not redirect_uri:
            raise PageAccessError(100, "Missing redirect_uri parameter.")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(self.login_user, client_id, redirect_uri)
        return code

    def exchange_code(
        self, client_id: str, client_secret: str, redirect_uri: str, code: str
    ) -> dict[str, object]:
        self._check_app(client_id, client_secret)
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None:
            raise PageAccessError(
                100, "This authorization code has been used or is invalid.", 36009
            )
        if grant.redirect_uri != redirect_uri:
            raise PageAccessError(
                100,
                "Error validating verification code. Please make sure "
                "your redirect_uri is identical to the one you used in "
                "the OAuth dialog request",
                36008,
            )
        return self._user_token(grant.user, SHORT_LIVED_S)

    def exchange_long_lived(
        self, client_id: str, client_secret: str, short_token: str
    ) -> dict[str, object]:
        self._check_app(client_id, client_secret)
        with self._lock:
            user = self._user_tokens.get(short_token)
        if user is None:
            raise PageAccessError(190)
        return self._user_token(user, LONG_LIVED_S)

    def accounts(self, user_token: str | None) -> list[dict[str, object]]:
        """The user's Pages with their Page tokens (`/me/accounts`)."""
        with self._lock:
            user = self._user_tokens.get(user_token or "")
            if user is None:
                raise PageAccessError(190)
            mine = [p for p in self._pages.values() if p.owner == user]
            for page in mine:
                page.token = page.token or f"page-{secrets.token_urlsafe(16)}"
            return [
                {
                    "id": p.id,
                    "name": p.name,
                    "access_token": p.token,
                    "category": "Personal blog",
                    "tasks": ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"],
                }
                for p in mine
            ]

    def _user_token(self, user: str, expires_in: int) -> dict[str, object]:
        token = f"user-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._user_tokens[token] = user
        return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}

    def _check_app(self, client_id: str, client_secret: str) -> None:
        if client_id != self.app_id or not secrets.compare_digest(
            client_secret.encode(), self._app_secret.encode()
        ):
            raise PageAccessError(1, "Error validating client secret.")
