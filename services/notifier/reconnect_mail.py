"""One email asking a Page's owner to reconnect it, when Facebook stopped accepting its token
(190) or blocked it (368): the uploader marks the connection, this loop mails its owner once.

A poll of the store rather than a message: the stop is a state the store already holds, and
a claim there (`claim_reconnect_mails`) makes one notifier send it once. A send that fails is
released and tried again at the next round.
"""

from __future__ import annotations

import logging
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from shared.process.periodic import start_periodic
from shared.store import PageState, Store
from shared.store.views import ReconnectMail

from .handler import Mailer

log = logging.getLogger(__name__)


def compose(mail: ReconnectMail, sender: str, connect_url: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Reconnect your Facebook Page to keep publishing"
    message["From"] = sender
    message["To"] = mail.email
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=f"reconnect.{mail.user_id}")
    why = (
        "Facebook blocked your Page for policy reasons, so the album being published "
        "stopped and your other albums are paused."
        if mail.state == PageState.BLOCKED
        else "Facebook no longer accepts our access to your Page (the permission was removed, "
        "your password changed, or the access expired), so your photos are paused."
    )
    # A block stopped the album under way (its photos not sent can be retried): "no photo
    # is lost" is said only of a refused token, where every photo waits.
    kept = "" if mail.state == PageState.BLOCKED else "No photo is lost. "
    message.set_content(
        f'{why}\n\n{kept}Reconnect your Page "{mail.page_name}" and the paused '
        f"photos go on where they stopped:\n\n    {connect_url}\n"
    )
    return message


class ReconnectMailer:
    def __init__(self, store: Store, mailer: Mailer, sender: str, app_base_url: str) -> None:
        self._store = store
        self._mailer = mailer
        self._sender = sender
        self._connect_url = f"{app_base_url.rstrip('/')}/connect/facebook"

    def run_once(self) -> int:
        """Mail every owner due a reconnect email; how many were sent."""
        sent = 0
        for mail in self._store.claim_reconnect_mails():
            try:
                self._mailer.send(compose(mail, self._sender, self._connect_url))
            except Exception:  # SMTP away: the claim is released, the next round retries
                log.warning(
                    "could not mail user %s about their Page; will retry",
                    mail.user_id,
                    exc_info=True,
                )
                self._store.release_reconnect_mail(mail.user_id)
                continue
            sent += 1
            log.info("asked user %s to reconnect their Facebook Page", mail.user_id)
        return sent

    def start(self, stop: threading.Event, every_s: float = 5.0) -> threading.Thread:
        return start_periodic("reconnect-mails", self.run_once, stop, every_s)
