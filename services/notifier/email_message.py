"""The completion email, rendered from Jinja2 templates (plain text and HTML parts)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from jinja2 import Environment, PackageLoader, select_autoescape

from shared.contracts.messages import AlbumSettled
from shared.observability import log_context

_env = Environment(
    loader=PackageLoader("services.notifier", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Control characters and encoded-word markers never reach a header: a title such as
# 'x =?UTF-8?Q?=0A?=Bcc: y' must stay inside the Subject (CVE-2024-6923).
#: The album's trace id (docs: README "Logs"), to find its story from the email it ended in.
TRACE_MAIL_HEADER = "X-Album-Trace-Id"
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]|=\?|\?=")


@dataclass(frozen=True)
class AlbumEmail:
    to: str
    title: str
    album_url: str
    event: AlbumSettled
    #: The album went out as one multi-photo post: its link, or why it failed (one of them).
    post_url: str | None = None
    post_error: str | None = None
    #: Why the destination changed by itself (Facebook refused to create the album).
    destination_note: str | None = None


def subject(title: str, uploaded: int, total: int) -> str:
    clean = _UNSAFE_IN_HEADER.sub(" ", title).strip()[:120] or "Untitled"
    photos = "photo" if total == 1 else "photos"
    if uploaded == total:
        every = "1 photo" if total == 1 else f"all {total} photos"
        return f"Your album '{clean}' is on Facebook: {every}"
    if uploaded == 0:
        return f"Your album '{clean}' could not be published: 0 of {total} {photos}"
    return f"Your album '{clean}' is on Facebook: {uploaded} of {total} {photos}"


def post_failed_subject(title: str) -> str:
    clean = _UNSAFE_IN_HEADER.sub(" ", title).strip()[:120] or "Untitled"
    return f"Your album '{clean}' could not be posted to Facebook"


def compose(mail: AlbumEmail, sender: str) -> EmailMessage:
    event = mail.event
    total = len(event.uploaded) + len(event.failed)
    context = {
        "title": mail.title,
        "album_url": mail.album_url,
        "total": total,
        "uploaded": [
            {"name": posixpath.basename(i.key), "photo_id": i.photo_id} for i in event.uploaded
        ],
        "failed": [{"name": posixpath.basename(i.key), "reason": i.reason} for i in event.failed],
        "post_url": mail.post_url,
        "post_error": mail.post_error,
        "destination_note": mail.destination_note,
    }
    message = EmailMessage()
    message["Subject"] = (
        post_failed_subject(mail.title)
        if mail.post_error
        else subject(mail.title, len(event.uploaded), total)
    )
    message["From"] = sender
    message["To"] = mail.to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=f"{event.album_id}.{event.settle_seq}")
    if (trace := log_context.trace_id()) is not None:  # the album's story, from its POST
        message[TRACE_MAIL_HEADER] = trace
    message.set_content(_env.get_template("album_settled.txt").render(context))
    message.add_alternative(_env.get_template("album_settled.html").render(context), subtype="html")
    return message
