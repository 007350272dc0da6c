"""The sign-in pages: the home redirect, sign in with an API token, sign out."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from . import rate_limits, sessions
from .next_path import same_site_path
from .page_guards import current_user
from .services import current_services


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a sign-in link must not send the user elsewhere."""
    return same_site_path(target) or url_for("web.albums")


def home() -> Any:
    return redirect(url_for("web.albums" if current_user() else "web.login"))


def login() -> Any:
    next_url = request.values.get("next")
    if request.method == "GET":
        return render_template("login.html", next_url=next_url)
    guard = rate_limits.signin_guard()
    guard.check()
    guard.spend()  # every attempt on the form, not only the failed ones
    user = current_services().store.user_by_token(request.form.get("token", "").strip())
    if user is None:
        return render_template(
            "login.html",
            next_url=next_url,
            error="That token is not valid. Check it and try again.",
        ), 401
    sessions.begin(user)
    return redirect(_safe_next(next_url), code=303)


def logout() -> Any:
    sessions.end(current_services().store, current_user())
    flash("You are signed out.")
    return redirect(url_for("web.login"), code=303)
