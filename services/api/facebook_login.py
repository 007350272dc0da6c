"""Facebook Login for connecting a Page: the dialog's URL, the code exchanged for a user token
(then a long-lived one), and the user's Pages with their Page tokens (`/me/accounts`).

Plain HTTP with requests; tokens go in the query only where Facebook's token endpoint wants
them and are never logged (errors name the step, not the URL). docs/facebook-login.md says
what each step is and where that comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

#: What connecting a Page asks for: list the user's Pages, and post to them.
SCOPES = ("pages_show_list", "pages_read_engagement", "pages_manage_posts")


class LoginFailed(Exception):
    """A step of Facebook Login failed; the message is fit to show the user."""


@dataclass(frozen=True)
class ManagedPage:
    id: str
    name: str
    #: The Page token: kept out of repr so it never lands in a log line.
    token: str = field(repr=False)


class FacebookLogin:
    def __init__(
        self,
        dialog_url: str,
        graph_url: str,
        version: str,
        app_id: str,
        app_secret: str,
        timeout: float = 10.0,
    ) -> None:
        self._dialog_url = dialog_url.rstrip("/")
        self._graph_url = graph_url.rstrip("/")
        self._version = version
        self._app_id = app_id
        self._app_secret = app_secret
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"FacebookLogin(app_id={self._app_id!r})"

    def dialog(self, redirect_uri: str, state: str) -> str:
        """Where to send the browser: Facebook's login dialog for our app."""
        query = urlencode(
            {
                "client_id": self._app_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "scope": ",".join(SCOPES),
            }
        )
        return f"{self._dialog_url}/{self._version}/dialog/oauth?{query}"

    def pages_for_code(self, code: str, redirect_uri: str) -> list[ManagedPage]:
        """The code from the dialog -> a user token -> a long-lived one -> the user's Pages,
        each with a Page token (long-lived too when asked for with a long-lived user token)."""
        short = self._get(
            "oauth/access_token",
            "exchange the login code",
            {
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        long = self._get(
            "oauth/access_token",
            "get a long-lived token",
            {
                "grant_type": "fb_exchange_token",
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "fb_exchange_token": _token(short),
            },
        )
        accounts = self._get(
            "me/accounts",
            "list your Pages",
            {"fields": "id,name,access_token"},
            bearer=_token(long),
        )
        return [
            ManagedPage(str(p["id"]), str(p.get("name") or p["id"]), str(p["access_token"]))
            for p in accounts.get("data", [])
            if p.get("access_token")
        ]

    def _get(
        self, path: str, step: str, params: dict[str, str], bearer: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            response = requests.get(
                f"{self._graph_url}/{self._version}/{path}",
                params=params,
                headers=headers,
                timeout=self._timeout,
            )
        except requests.RequestException:
            raise LoginFailed(f"could not reach Facebook to {step}; try again") from None
        body = _json(response)
        if response.status_code != 200 or "error" in body:
            error = body.get("error") or {}
            raise LoginFailed(
                f"Facebook refused to {step}: "
                f"{error.get('message') or f'HTTP {response.status_code}'}"
            )
        return body


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _token(body: dict[str, Any]) -> str:
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise LoginFailed("Facebook's answer held no access token")
    return token
