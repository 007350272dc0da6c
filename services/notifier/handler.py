"""Mail the album's owner once per settle: the notifier's handler.

It returns (ack) or raises an outcome (`shared.outcomes`); the consumer runtime (`shared.fate`)
turns that into a retry copy or a dead letter for the email that could not be sent.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared import messages, outcomes, store, topology
from shared.fate import Route
from shared.retry_policy import RetryPolicy

from .email_message import AlbumEmail, compose
from .mailer import classify

log = logging.getLogger(__name__)

QUEUE = topology.ALBUM_SETTLED
#: A claim whose sender never confirmed (it died mid-send) may be taken again after this.
_CLAIM_STALE = timedelta(minutes=2)
#: Pauses between tries to record a sent mail while the store is away (about a minute).
_MARK_PAUSES_S = (0.5, 1, 2, 4, 8, 15, 30)


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class AlbumNotifier:
    def __init__(self, ledger: store.Store, mailer: Mailer, sender: str, app_base_url: str,
                 policy: tuple[tuple[int, ...], int]) -> None:
        self._store = ledger
        self._mailer = mailer
        self._sender = sender
        self._base_url = app_base_url.rstrip("/")
        self._delays, self._max_attempts = policy

    def route(self) -> Route[messages.AlbumSettled]:
        """The notifier's work queue, as the consumer runtime runs it: an email given up on is
        dead-lettered by the runtime (nothing to record with it)."""
        return Route(QUEUE, messages.AlbumSettled, self,
                     RetryPolicy(self._delays, self._max_attempts))

    def __call__(self, event: messages.AlbumSettled, attempt: int) -> None:
        mail = self._prepare(event)
        claim = self._store.claim_notification(event.album_id, event.settle_seq, _CLAIM_STALE)
        if claim == store.SENT:
            log.info("album %s settle %d already mailed", event.album_id, event.settle_seq)
            return
        if claim == store.BUSY:
            raise outcomes.Busy(None, "another notifier is sending this email")
        try:
            self._mailer.send(compose(mail, self._sender))
        except Exception as exc:
            self._store.release_notification(event.album_id, event.settle_seq)
            raise outcomes.of(classify(exc)) from exc
        self._mark_sent(event)
        log.info("album %s settle %d mailed", event.album_id, event.settle_seq)

    def _mark_sent(self, event: messages.AlbumSettled) -> None:
        """The mail is out: record it, riding out a short store outage. Raising here would
        leave a claim that goes stale in two minutes and mails the user a second time."""
        for pause in _MARK_PAUSES_S:
            try:
                self._store.mark_notification_sent(event.album_id, event.settle_seq)
                return
            except SQLAlchemyError as exc:
                log.warning("album %s mailed, not yet recorded (%s); again in %s s",
                            event.album_id, type(exc).__name__, pause)
                time.sleep(pause)
        self._store.mark_notification_sent(event.album_id, event.settle_seq)

    def _prepare(self, event: messages.AlbumSettled) -> AlbumEmail:
        album = self._store.album(event.album_id)
        user = self._store.user(album.user_id) if album else None
        if album is None or user is None:
            raise messages.PoisonMessage(f"album {event.album_id} is not in the store")
        to = album.notify_email or user.email
        return AlbumEmail(to, album.title, f"{self._base_url}/albums/{album.id}", event)
