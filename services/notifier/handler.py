"""Mail the album's owner once per settle: the notifier's handler.

It returns (ack) or raises an outcome (`shared.contracts.outcomes`); the consumer runtime
(`shared.policies.fate`) turns that into a retry copy or a dead letter for the email that could not
be sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared import store
from shared.contracts import messages, outcomes, topology
from shared.contracts.destinations import post_url
from shared.observability import metrics
from shared.policies.fate import Route
from shared.policies.retry_policy import RetryPolicy
from shared.store import Destination

from .claim_timing import backoff, mark_deadline
from .email_message import AlbumEmail, compose
from .mailer import classify
from .settle_check import stored_settle

log = logging.getLogger(__name__)

QUEUE = topology.ALBUM_SETTLED
#: How long a claim holds before another notifier may take it over (its sender died mid-send):
#: the timing rule is in claim_timing.py. Longer delays a crashed sender's mail; shorter
#: risks a second mail after a store outage outlasting it.
CLAIM_LEASE = timedelta(minutes=10)
#: The first and the longest pause between tries to record a sent mail while the store is away.
_MARK_PAUSE_S = (0.5, 30.0)


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Return once the relay accepted the message; raise only if it did not."""


class AlbumNotifier:
    def __init__(
        self,
        ledger: store.Store,
        mailer: Mailer,
        sender: str,
        app_base_url: str,
        policy: tuple[tuple[int, ...], int],
        *,
        claim_lease: timedelta = CLAIM_LEASE,
        mark_pause_s: tuple[float, float] = _MARK_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = ledger
        self._claim_lease = claim_lease
        self._mark_pause_s = mark_pause_s
        self._clock = clock
        self._sleep = sleep
        self._mailer = mailer
        self._sender = sender
        self._base_url = app_base_url.rstrip("/")
        self._delays, self._max_attempts = policy

    def route(self) -> Route[messages.AlbumSettled]:
        """The notifier's work queue, as the consumer runtime runs it: an email given up on is
        dead-lettered by the runtime (nothing to record with it). A store outage raised from
        here is the runtime's to ride out: it delays the event without spending attempts."""
        return Route(
            QUEUE, messages.AlbumSettled, self, RetryPolicy(self._delays, self._max_attempts)
        )

    def __call__(self, event: messages.AlbumSettled, attempt: int) -> None:
        mail, published_at = self._prepare(event)
        asked_at = self._clock()
        claim = self._store.claim_notification(event.album_id, event.settle_seq, self._claim_lease)
        if claim.state == store.ClaimVerdict.SENT:
            log.info("album %s settle %d already mailed", event.album_id, event.settle_seq)
            return
        if claim.state == store.ClaimVerdict.BUSY:
            raise outcomes.Busy(None, "another notifier is sending this email")
        assert claim.claim_id is not None  # SEND always comes with its claim
        try:
            self._mailer.send(compose(mail, self._sender))
        except Exception as exc:
            metrics.EMAILS.labels("failed").inc()
            self._release(event, claim.claim_id)
            raise outcomes.of(classify(exc)) from exc
        metrics.EMAILS.labels("sent").inc()
        if published_at is not None:  # stored times are naive UTC
            metrics.PUBLISH_TO_SETTLE.observe(
                (datetime.now(UTC).replace(tzinfo=None) - published_at).total_seconds()
            )
        self._mark_sent(event, claim.claim_id, mark_deadline(asked_at, self._claim_lease))

    def _release(self, event: messages.AlbumSettled, claim_id: str) -> None:
        """The mail did not go: free the claim for the next attempt. If the store is away,
        the claim lapses by itself (the next attempts wait for it as for a busy sender)."""
        try:
            self._store.release_notification(event.album_id, event.settle_seq, claim_id)
        except SQLAlchemyError as exc:
            log.warning(
                "album %s settle %d: claim not released (%s); it lapses in %s",
                event.album_id,
                event.settle_seq,
                type(exc).__name__,
                self._claim_lease,
            )

    def _mark_sent(self, event: messages.AlbumSettled, claim_id: str, deadline: float) -> None:
        """The mail is out: record it, retrying through a store outage as long as the claim is
        ours (claim_timing.py). Never raises: a settle delivered again would mail again."""
        pauses = backoff(*self._mark_pause_s)
        while True:
            try:
                ours = self._store.mark_notification_sent(
                    event.album_id, event.settle_seq, claim_id
                )
            except SQLAlchemyError as exc:
                pause = next(pauses)
                if self._clock() + pause > deadline:
                    log.error(
                        "album %s settle %d mailed, but the store stayed away (%s) until "
                        "the claim's lease was nearly over: not recorded, so a duplicate "
                        "of this settle would be mailed again",
                        event.album_id,
                        event.settle_seq,
                        type(exc).__name__,
                    )
                    return
                log.warning(
                    "album %s mailed, not yet recorded (%s); again in %s s",
                    event.album_id,
                    type(exc).__name__,
                    pause,
                )
                self._sleep(pause)
                continue
            if ours:
                log.info("album %s settle %d mailed", event.album_id, event.settle_seq)
            else:
                log.error(
                    "album %s settle %d mailed, but its claim had lapsed and another "
                    "notifier took it over: the user may get this email twice",
                    event.album_id,
                    event.settle_seq,
                )
            return

    def _prepare(self, event: messages.AlbumSettled) -> tuple[AlbumEmail, datetime | None]:
        """The email, and when its album was published."""
        album = self._store.album(event.album_id)
        user = self._store.user(album.user_id) if album else None
        if album is None or user is None:
            raise messages.PoisonMessage(f"album {event.album_id} is not in the store")
        to = album.notify_email or user.email
        post = album.destination == Destination.POST
        return AlbumEmail(
            to,
            album.title,
            f"{self._base_url}/albums/{album.id}",
            stored_settle(event, album),
            post_url(album.fb_post_id) if post and album.fb_post_id else None,
            album.post_error if post else None,
            album.destination_note,
        ), album.created_at
