"""Connect a Facebook Page: the web pages of Facebook Login (docs/facebook-login.md).

`GET /connect/facebook` sends the signed-in user to the login dialog with a signed, one-time
`state`; the callback checks it, exchanges the code for the user's Pages and connects the one
(or lets the user pick among several). The Page token is sealed before it is stored and, while
the user picks, sits sealed in the session cookie: never in the clear outside this process.
Connecting re-queues what waited for the Page (through the outbox).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .facebook_login import FacebookLogin, LoginFailed, ManagedPage
from .page_guards import guard, signed_in
from .rate_limits import per_user
from .services import current_services

log = logging.getLogger(__name__)
connect = Blueprint("connect", __name__, template_folder="templates")
# The same guards as the other web pages: CSRF on every POST, their headers, HTML errors.
guard(connect)

#: How long the dialog may take before its state is refused.
STATE_MAX_AGE_S = 600
#: Per user, every step spends one: each callback costs Graph calls in the app's name.
limit_connect = per_user(
    "connect", lambda s: s.connect_rate_limit, "Facebook Page connection steps"
)


def _login() -> FacebookLogin:
    settings = current_services().settings
    return FacebookLogin(
        settings.facebook_dialog_url,
        settings.graph_api_url,
        settings.graph_api_version,
        settings.facebook_app_id,
        settings.facebook_app_secret.get_secret_value(),
    )


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt="facebook-connect")


def _callback_url() -> str:
    return url_for("connect.callback", _external=True)


@connect.app_context_processor
def _page_globals() -> dict[str, Any]:
    """Every page shows which Page is connected, or asks to connect or reconnect one."""
    user = g.get("user")
    return {"fb_page": current_services().store.page(user.id) if user else None}


@connect.get("/connect/facebook")
@signed_in
@limit_connect
def start() -> Any:
    nonce = secrets.token_urlsafe(16)
    session["fb_nonce"] = nonce
    state = _signer().dumps({"u": g.user.id, "n": nonce})
    return redirect(_login().dialog(_callback_url(), state))


@connect.get("/connect/facebook/callback")
@signed_in
@limit_connect
def callback() -> Any:
    _check_state(request.args.get("state", ""))
    if request.args.get("error"):  # the user said no in the dialog
        flash("Facebook Login was cancelled: no Page was connected.")
        return redirect(url_for("web.home"))
    code = request.args.get("code", "")
    if not code:
        abort(400, "Facebook sent no code back; start again from Connect a Page.")
    try:
        pages = _login().pages_for_code(code, _callback_url())
    except LoginFailed as exc:
        abort(502, f"{exc}.")
    if not pages:
        abort(
            422,
            "Your Facebook account manages no Page this app may post to. Create a "
            "Page, or grant access to one in the dialog, and start again.",
        )
    if len(pages) == 1:
        return _connected(pages[0])
    # Sealed: the session cookie is signed, not encrypted.
    sealed = current_services().cipher.encrypt(
        json.dumps([{"id": p.id, "name": p.name, "token": p.token} for p in pages])
    )
    session["fb_pages"] = sealed.decode()
    return render_template("pick_page.html", pages=pages)


@connect.post("/connect/facebook/pick")
@signed_in
@limit_connect
def pick() -> Any:
    sealed = session.pop("fb_pages", None)
    if not sealed:
        abort(400, "The list of Pages expired; start again from Connect a Page.")
    offered = json.loads(current_services().cipher.decrypt(sealed.encode()))
    chosen = [p for p in offered if p["id"] == request.form.get("page_id")]
    if not chosen:
        abort(422, "Pick one of the Pages listed.")
    return _connected(ManagedPage(chosen[0]["id"], chosen[0]["name"], chosen[0]["token"]))


@connect.post("/connect/facebook/disconnect")
@signed_in
@limit_connect
def disconnect() -> Any:
    if current_services().store.disconnect_page(g.user.id):
        flash("Your Facebook Page was disconnected; its token was deleted.")
    return redirect(url_for("web.home"), code=303)


def _check_state(state: str) -> None:
    """The state must be one we signed for this user's session, not older than the dialog
    may take; it is used once."""
    nonce = session.pop("fb_nonce", None)
    try:
        data = _signer().loads(state, max_age=STATE_MAX_AGE_S)
    except BadSignature:
        data = None
    if not (
        isinstance(data, dict)
        and nonce
        and data.get("u") == g.user.id
        and secrets.compare_digest(str(data.get("n")), nonce)
    ):
        log.warning("user %s: Facebook Login callback with a bad state refused", g.user.id)
        abort(
            400,
            "This Facebook Login answer is not one we asked for, or it expired. Start "
            "again from Connect a Page.",
        )


def _connected(page: ManagedPage) -> Any:
    services = current_services()
    resumed = services.store.connect_page(
        g.user.id, page.id, page.name, services.cipher.encrypt(page.token)
    )
    services.outbox.send_committed(resumed)
    log.info(
        "user %s connected Facebook Page %s (%d paused images resumed)",
        g.user.id,
        page.id,
        len(resumed),
    )
    # The rows resumed: each paused photo's upload, and the album's post if it paused too.
    note = " What waited for it is on its way again." if resumed else ""
    flash(f"Connected your Facebook Page {page.name}.{note}")
    return redirect(url_for("web.home"), code=303)
