"""Mail the album's owner once per settle: the notifier's handler."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared import messages, retry_policy, store, topology
from shared.broker.consumer import Delivery, Outcome
from shared.dead_letters import dead_letter
from shared.retry_policy import GiveUp

from .email_message import AlbumEmail, compose
from .mailer import classify

log = logging.getLogger(__name__)

QUEUE = topology.ALBUM_SETTLED
#: A claim whose sender never confirmed (it died mid-send) may be taken again after this.
_CLAIM_STALE = timedelta(minutes=2)
#: The first and the longest pause between tries to record a sent mail while the store is away.
_MARK_PAUSE_S = (0.5, 30.0)
#: How many times the mark is retried (0.5 s doubling to 30 s: about a minute).
_MARK_TRIES = 7


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class AlbumNotifier:
    def __init__(self, ledger: store.Store, mailer: Mailer, sender: str, app_base_url: str,
                 policy: tuple[tuple[int, ...], int], *, claim_lease: timedelta = _CLAIM_STALE,
                 mark_pause_s: tuple[float, float] = _MARK_PAUSE_S) -> None:
        self._store = ledger
        self._claim_lease = claim_lease
        self._mark_pause_s = mark_pause_s
        self._mailer = mailer
        self._sender = sender
        self._base_url = app_base_url.rstrip("/")
        self._delays, self._max_attempts = policy

    def __call__(self, delivery: Delivery) -> Outcome:
        attempt = retry_policy.attempt_of(delivery.headers)
        try:
            event, mail = self._prepare(delivery.body)
        except (messages.PoisonMessage, LookupError) as exc:
            log.warning("dead-lettering a poison message: %s", exc)
            return Outcome([dead_letter(QUEUE, delivery.body, delivery.headers, str(exc), None,
                                        attempt)])
        claim = self._store.claim_notification(event.album_id, event.settle_seq,
                                              self._claim_lease)
        if claim == store.SENT:
            log.info("album %s settle %d already mailed", event.album_id, event.settle_seq)
            return Outcome()
        if claim == store.BUSY:
            return self._retry(delivery, attempt, "another notifier is sending this email")
        try:
            self._mailer.send(compose(mail, self._sender))
        except Exception as exc:
            self._store.release_notification(event.album_id, event.settle_seq)
            return self._after_failure(delivery, attempt, classify(exc))
        self._mark_sent(event)
        log.info("album %s settle %d mailed", event.album_id, event.settle_seq)
        return Outcome()

    def _mark_sent(self, event: messages.AlbumSettled) -> None:
        """The mail is out: record it, riding out a short store outage. Raising here would
        leave a claim that goes stale in two minutes and mails the user a second time."""
        first, longest = self._mark_pause_s
        for n in range(_MARK_TRIES):
            pause = min(first * 2 ** n, longest)
            try:
                self._store.mark_notification_sent(event.album_id, event.settle_seq)
                return
            except SQLAlchemyError as exc:
                log.warning("album %s mailed, not yet recorded (%s); again in %s s",
                            event.album_id, type(exc).__name__, pause)
                time.sleep(pause)
        self._store.mark_notification_sent(event.album_id, event.settle_seq)

    def _prepare(self, body: bytes) -> tuple[messages.AlbumSettled, AlbumEmail]:
        event = messages.decode(body)
        if not isinstance(event, messages.AlbumSettled):
            raise messages.PoisonMessage(f"{event.type} does not belong on {QUEUE.name}")
        album = self._store.album(event.album_id)
        user = self._store.user(album.user_id) if album else None
        if album is None or user is None:
            raise LookupError(f"album {event.album_id} is not in the store")
        to = album.notify_email or user.email
        return event, AlbumEmail(to, album.title, f"{self._base_url}/albums/{album.id}", event)

    def _after_failure(self, delivery: Delivery, attempt: int,
                       failure: retry_policy.Failure) -> Outcome:
        step = retry_policy.next_step(failure, attempt, self._delays, self._max_attempts)
        if isinstance(step, GiveUp):
            log.error("email dead-lettered: %s", step.reason)
            return Outcome([dead_letter(QUEUE, delivery.body, delivery.headers, step.reason,
                                        failure.code, attempt)])
        log.warning("email retries in %s s: %s", step.delay_s, failure.reason)
        return Outcome([retry_policy.retry_message(QUEUE, delivery.body, delivery.headers, step)])

    def _retry(self, delivery: Delivery, attempt: int, reason: str) -> Outcome:
        failure = retry_policy.Failure(retry_policy.FailureKind.THROTTLED, reason)
        return self._after_failure(delivery, attempt, failure)
