"""The notifier's handler against the real store and the mail catcher: one email per settle,
however often it is delivered and whatever the store does after the mail went out."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from dev.mail_catcher import MailCatcher
from services.notifier.handler import AlbumNotifier
from services.notifier.mailer import SmtpMailer
from shared import messages, topology
from shared.fate import Delivery, Fate, decide

from .store_blips import BlippingStore, age_notifications

pytestmark = pytest.mark.integration

POLICY = ((1, 3), 3)


@pytest.fixture
def notifier(catcher, sqlite_store):
    def make(store=None):
        return AlbumNotifier(store or sqlite_store,
                             SmtpMailer("127.0.0.1", catcher.smtp_port, 5.0),
                             "albums@localhost", "http://albums.test", POLICY)

    return make


def settled_album(store) -> tuple[str, str, Delivery]:
    """A one-image album that settled: (its id, its owner's address, the settle's delivery)."""
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    user, _ = store.create_user(email)
    album_id, _ = store.create_album(user.id, "Notifier test", None, [f"{user.prefix}a.png"])
    image_id = store.album(album_id).images[0].id
    assert store.start_attempt(image_id).attempt == 1
    (settled_row,) = store.record_uploaded(image_id, "photo-1")
    event = messages.decode(settled_row.body)
    assert isinstance(event, messages.AlbumSettled) and event.album_id == album_id
    return album_id, email, Delivery(settled_row.body, {}, False, settled_row.message_id,
                                     topology.ALBUM_SETTLED.routing_key)


def deliver(handler: AlbumNotifier, delivery: Delivery) -> Fate:
    """As the consumer runtime runs a handler: the message's fate (a store error is an
    outage: the message waits in a delay tier to be delivered again)."""
    return decide(handler.route(), delivery)


def mails_to(catcher: MailCatcher, address: str) -> list[tuple[int, str | None]]:
    """The mails `address` received: (the catcher's id, the subject)."""
    return [(m.id, m.subject) for m in catcher.messages if address in m.rcpt_tos]


def test_a_settle_delivered_twice_is_mailed_once(notifier, sqlite_store, catcher):
    _, email, delivery = settled_album(sqlite_store)
    handler = notifier()
    assert deliver(handler, delivery).publish == ()
    assert deliver(handler, dataclasses.replace(delivery, redelivered=True)).publish == ()
    ((_, subject),) = mails_to(catcher, email)
    assert subject is not None and "Notifier test" in subject


def test_a_store_error_after_the_mail_went_out_sends_no_second_email(notifier, sqlite_store,
                                                                     catcher):
    _, email, delivery = settled_album(sqlite_store)
    # The mail is out; the store fails as it is recorded sent.
    blipping = BlippingStore(sqlite_store, "mark_notification_sent")
    first = deliver(notifier(store=blipping), delivery)
    assert blipping.blips == 1
    assert len(mails_to(catcher, email)) == 1

    # The same settle again (a redelivery, or the outbox relaying it twice), after long enough
    # that a claim never confirmed sent counts as its sender's death.
    age_notifications(sqlite_store)
    again = deliver(notifier(), dataclasses.replace(delivery, redelivered=True))
    assert len(mails_to(catcher, email)) == 1
    assert first.kind == "ack" and again.kind == "ack"
