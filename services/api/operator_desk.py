"""The dead-letter desk: operators (users with the operator role) see dead letters grouped by
kind of end and Graph code, open one, replay or purge it, a group or an album's, and see the
albums that are stuck. Every action is audited (who, when, what, how many).

The desk reads only the store's index of letters (shared/store/dead_letter_index.py), paged: a
request never reads the dead-letter queue. A replay sends the work again through the outbox
(shared/delivery/replay.py, as the CLI's replay does); the queue's copy is drained by the uploader.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from shared.delivery.replay import Replayed
from shared.store.tables import LetterState
from shared.store.views import LetterView

from . import json_body
from .page_guards import guard, signed_in
from .services import current_services
from .whole_numbers import INT32_MAX, INT32_MIN, BadNumber, page_number, whole_number

desk = Blueprint("desk", __name__, template_folder="templates")
# The same guards as the other web pages: CSRF on every POST, their headers, HTML errors.
guard(desk)

PAGE_SIZE = 50
ACTIONS = {"replay": LetterState.REPLAYED, "purge": LetterState.PURGED}


def operator_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed in (a stranger goes to sign in) and an operator (an end user gets 403)."""

    @signed_in
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.user.is_operator:
            abort(403, "This page is for operators.")
        return view(*args, **kwargs)

    return wrapper


def _page() -> int:
    try:
        return page_number(request.args.get("page"))
    except BadNumber as exc:
        abort(400, exc.reason)


def _code(value: str | None) -> int | None:
    """A group's Graph code as the store keeps it (a 32-bit column); none for "none"."""
    if value is None or value in ("", "none"):
        return None
    try:
        return whole_number(value, "code", INT32_MIN, INT32_MAX)
    except BadNumber as exc:
        abort(400, f"{exc.reason}, or none")


def _act(action: str, letters: list[LetterView], target: str) -> Replayed:
    """Replay or purge `letters` (waiting ones), audit it: how many were acted on, and how many
    of a replay's were stale (their image was queued again since: nothing was sent for them)."""
    if action not in ACTIONS:
        abort(404)
    services = current_services()
    stale = 0
    if action == "replay" and letters:
        # Sent first, marked after: a crash between leaves them waiting, and a second replay
        # of an image's letter is stale then (it sends nothing again).
        stale = services.replayer.replay_indexed(letters).stale
    count = services.store.settle_letters(
        [letter.message_id for letter in letters], ACTIONS[action], g.user.email, action, target
    )
    return Replayed(count, min(stale, count))


def _done(action: str, acted: Replayed, back: str) -> Any:
    word = "Replayed" if action == "replay" else "Purged"
    count, stale = acted.taken, acted.stale
    said = f"{word} {count} dead letter{'s' if count != 1 else ''}"
    if stale:  # "Replayed 1" alone read as a message sent
        whose, them = ("its image was", "it") if stale == 1 else ("their images were", "them")
        said += f" ({stale} stale: {whose} queued again since, so nothing was sent for {them})"
    flash(f"{said}." if count else "No waiting dead letters there: nothing done.")
    return redirect(back, code=303)


@desk.get("/operator/dead-letters")
@operator_only
def dead_letters() -> Any:
    page = _page()
    store = current_services().store
    groups = store.letter_groups((page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    return render_template(
        "desk_groups.html",
        groups=groups[:PAGE_SIZE],
        page=page,
        more=len(groups) > PAGE_SIZE,
        audit=store.audit_log(0, 20),
    )


@desk.get("/operator/dead-letters/groups/<kind>")
@operator_only
def group(kind: str) -> Any:
    page, code = _page(), _code(request.args.get("code"))
    letters = current_services().store.group_letters(
        kind, code, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1
    )
    if not letters and page == 1:
        abort(404, "No waiting dead letters in that group.")
    return render_template(
        "desk_group.html",
        kind=kind,
        code=code,
        letters=letters[:PAGE_SIZE],
        name=letters[0].group if letters else kind,
        page=page,
        more=len(letters) > PAGE_SIZE,
    )


@desk.post("/operator/dead-letters/groups/<kind>/<action>")
@operator_only
def group_action(kind: str, action: str) -> Any:
    code = _code(request.form.get("code"))
    letters = current_services().store.waiting_letters(
        kind=kind, code=code, limit=current_services().settings.desk_action_limit
    )
    acted = _act(
        action, letters, f"group {kind}: code {code}" if code is not None else f"group {kind}"
    )
    return _done(action, acted, url_for("desk.dead_letters"))


@desk.get("/operator/dead-letters/<message_id>")
@operator_only
def letter(message_id: str) -> Any:
    found = current_services().store.dead_letter(message_id)
    if found is None:
        abort(404, "No such dead letter.")
    return render_template(
        "desk_letter.html",
        letter=found,
        body=_readable(found.body),
        headers=json.dumps(found.headers, indent=2, sort_keys=True, default=str),
    )


@desk.post("/operator/dead-letters/<message_id>/<action>")
@operator_only
def letter_action(message_id: str, action: str) -> Any:
    if current_services().store.dead_letter(message_id) is None:
        abort(404, "No such dead letter.")
    letters = current_services().store.waiting_letters([message_id])
    acted = _act(action, letters, f"letter {message_id}")
    return _done(action, acted, url_for("desk.letter", message_id=message_id))


@desk.post("/operator/albums/<album_id>/<action>")
@operator_only
def album_action(album_id: str, action: str) -> Any:
    letters = current_services().store.waiting_letters(
        album_id=album_id, limit=current_services().settings.desk_action_limit
    )
    acted = _act(action, letters, f"album {album_id}")
    return _done(action, acted, url_for("desk.dead_letters"))


@desk.get("/operator/stuck")
@operator_only
def stuck() -> Any:
    page = _page()
    grace = timedelta(seconds=current_services().settings.desk_stuck_grace_s)
    albums = current_services().store.stuck_albums(grace, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    return render_template(
        "desk_stuck.html", albums=albums[:PAGE_SIZE], page=page, more=len(albums) > PAGE_SIZE
    )


def _readable(body: bytes) -> str:
    """The body as indented JSON if it is JSON, else as text (undecodable bytes replaced).
    Read as a request's body is (json_body.py): poison nested past the parser's recursion
    limit, or holding a number past int()'s digits, is text here, not a 500."""
    try:
        return json.dumps(json_body.parse(body), indent=2, sort_keys=True)
    except json_body.UnreadableBody:
        return body.decode("utf-8", errors="replace")
