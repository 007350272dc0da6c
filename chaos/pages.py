"""Connected Facebook Pages for a row's users: a Page of their own in the Graph simulator,
connected through Facebook Login as a browser follows it (our sign-in page, our redirect to
the dialog, the dialog's back to our callback), its token revoked, and a reconnect (a new
login hands out a new Page token)."""

from __future__ import annotations

import re
from typing import Any

import requests

from chaos.system import System

RECONNECT_SUBJECT = "Reconnect your Facebook Page"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_page(system: System, page_id: str, fb_user: str) -> None:
    """A Page in the simulator owned by its Facebook user `fb_user`."""
    requests.post(
        f"{system.graph_url}/_sim/pages", json={"id": page_id, "owner": fb_user}, timeout=10
    ).raise_for_status()


def connect(system: System, token: str, fb_user: str) -> None:
    """Sign in with the user's API token and connect the Page of Facebook user `fb_user`
    (again: a reconnect, with the new token the dialog hands out)."""
    requests.put(
        f"{system.graph_url}/_sim/login", json={"user": fb_user}, timeout=10
    ).raise_for_status()
    browser = requests.Session()
    signin = _CSRF.search(browser.get(f"{system.api_url}/login", timeout=30).text)
    if signin is None:
        raise RuntimeError("the sign-in page has no csrf_token")
    browser.post(
        f"{system.api_url}/login", data={"token": token, "csrf_token": signin[1]}, timeout=30
    ).raise_for_status()
    landed = browser.get(f"{system.api_url}/connect/facebook", timeout=60)
    if landed.status_code != 200 or "Connected your Facebook Page" not in landed.text:
        raise RuntimeError(f"connecting {fb_user}'s Page failed: {landed.status_code} {landed.url}")


def revoke(system: System, page_id: str) -> None:
    """Facebook stops accepting the Page's token (190 from now on)."""
    requests.post(f"{system.graph_url}/_sim/pages/{page_id}/revoke", timeout=10).raise_for_status()


def page_of(system: System, token: str) -> dict[str, Any] | None:
    """`GET /api/page` for the user: their connected Page and its state."""
    response = requests.get(
        f"{system.api_url}/api/page", timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    page = response.json()["page"]
    return dict(page) if page else None


def reconnect_mails(mails: list[dict[str, Any]], address: str | None = None) -> list[Any]:
    """The mails asking a Page's owner to reconnect (to `address`, or to anyone)."""
    return [
        m
        for m in mails
        if (m.get("subject") or "").startswith(RECONNECT_SUBJECT)
        and (address is None or address in (m.get("to") or []))
    ]
