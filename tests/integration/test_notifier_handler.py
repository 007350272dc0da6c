"""The notifier's handler against the real store and the mail catcher: one email per settle,
however often it is delivered and whatever the store does after the mail went out."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from dev.mail_catcher import GOODBYE, CatchingHandler, Fault, MailCatcher
from dev.ports import free_port
from dev.rabbit_admin import Broker
from services.notifier.handler import AlbumNotifier
from services.notifier.mailer import SmtpMailer
from shared.broker.connection import declare_topology
from shared.broker.consumer import Consumer
from shared.broker.declarer import TopologyDeclarer
from shared.broker.publisher import Publisher
from shared.config.settings import CommonSettings
from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing
from shared.policies.fate import Delivery, Fate, decide
from shared.store import Store
from tests.conftest import VhostMaker
from tests.present import present

from .helpers import message_count, wait_for
from .store_blips import BlippingStore, StoreOutage, age_notifications

pytestmark = pytest.mark.integration

POLICY = ((1, 3), 3)
#: Timings shrunk for the tests: a claim lasts 4 s, the sent mark's pauses go 0.1 s to 0.4 s.
SHORT = {"claim_lease": timedelta(seconds=4), "mark_pause_s": (0.1, 0.4)}


@pytest.fixture
def notifier(catcher: MailCatcher, sqlite_store: Store) -> Callable[..., AlbumNotifier]:
    def make(
        store: Store | None = None, smtp_port: int | None = None, **timing: Any
    ) -> AlbumNotifier:
        return AlbumNotifier(
            store or sqlite_store,
            SmtpMailer("127.0.0.1", smtp_port or catcher.smtp_port, 5.0),
            "albums@localhost",
            "http://albums.test",
            POLICY,
            **timing,
        )

    return make


def settled_album(store: Store) -> tuple[str, str, Delivery]:
    """A one-image album that settled: (its id, its owner's address, the settle's delivery)."""
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    user, _ = store.create_user(email)
    album_id, _ = store.create_album(user.id, "Notifier test", None, [f"{user.prefix}a.png"])
    image_id = present(store.album(album_id)).images[0].id
    assert store.start_attempt(image_id).attempt == 1
    (settled_row,) = store.record_uploaded(image_id, "photo-1")
    event = messages.decode(settled_row.body)
    assert isinstance(event, messages.AlbumSettled) and event.album_id == album_id
    return (
        album_id,
        email,
        Delivery(
            settled_row.body, {}, False, settled_row.message_id, topology.ALBUM_SETTLED.routing_key
        ),
    )


def deliver(handler: AlbumNotifier, delivery: Delivery) -> Fate:
    """As the consumer runtime runs a handler: the message's fate (a store error is an
    outage: the message waits in a delay tier to be delivered again)."""
    return decide(handler.route(), delivery)


def mails_to(catcher: MailCatcher, address: str) -> list[tuple[int, str | None]]:
    """The mails `address` received: (the catcher's id, the subject)."""
    return [(m.id, m.subject) for m in catcher.messages if address in m.rcpt_tos]


def test_a_settle_delivered_twice_is_mailed_once(
    notifier: Callable[..., AlbumNotifier], sqlite_store: Store, catcher: MailCatcher
) -> None:
    _, email, delivery = settled_album(sqlite_store)
    handler = notifier()
    assert deliver(handler, delivery).outgoing == ()
    assert deliver(handler, dataclasses.replace(delivery, redelivered=True)).outgoing == ()
    ((_, subject),) = mails_to(catcher, email)
    assert subject is not None and "Notifier test" in subject


def test_a_store_error_after_the_mail_went_out_sends_no_second_email(
    notifier: Callable[..., AlbumNotifier], sqlite_store: Store, catcher: MailCatcher
) -> None:
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
    assert first.outgoing == () and again.outgoing == ()


@pytest.mark.slow
def test_a_store_outage_after_the_mail_was_accepted_sends_no_second_email(
    notifier: Callable[..., AlbumNotifier], store: Store, catcher: MailCatcher
) -> None:
    """The store goes away as the mail is recorded sent, for longer than the mark used to be
    retried but within the claim's lease: the mark must outlast the outage."""
    _, email, delivery = settled_album(store)
    outage = StoreOutage(store, 3.0, methods={"mark_notification_sent"})
    first = deliver(notifier(store=outage, **SHORT), delivery)
    assert outage.failures >= 1
    assert len(mails_to(catcher, email)) == 1

    # The same settle again, once a claim left unconfirmed would have lapsed.
    age_notifications(store)
    again = deliver(notifier(store=store, **SHORT), dataclasses.replace(delivery, redelivered=True))
    assert len(mails_to(catcher, email)) == 1
    assert first.outgoing == () and again.outgoing == ()


class DropAtQuit(CatchingHandler):
    """Keeps the mail (250 after DATA), then hangs up on QUIT without a word."""

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        server.transport.close()
        return GOODBYE  # never reaches the client: the connection is gone


@pytest.fixture
def dropping_relay(catcher: MailCatcher) -> Iterator[int]:
    """An SMTP port that stores into `catcher` and drops the connection at QUIT."""
    port = free_port()
    controller = Controller(
        DropAtQuit(catcher.store, catcher.faults),
        hostname="127.0.0.1",
        port=port,
        server_hostname="drop-at-quit.local",
    )
    controller.start()
    yield port
    controller.stop(no_assert=True)


@pytest.mark.parametrize("goodbye", ["421 4.4.2 closing", "drop"])
def test_a_mail_the_relay_accepted_is_sent_whatever_quit_brings(
    notifier: Callable[..., AlbumNotifier],
    sqlite_store: Store,
    catcher: MailCatcher,
    goodbye: str,
    request: pytest.FixtureRequest,
) -> None:
    _, email, delivery = settled_album(sqlite_store)
    if goodbye == "drop":
        handler = notifier(smtp_port=request.getfixturevalue("dropping_relay"))
    else:
        catcher.faults.current = Fault(goodbye, "quit")
        handler = notifier()
    first = deliver(handler, delivery)
    assert len(mails_to(catcher, email)) == 1
    # Whatever came back (a retry copy, or nothing), the same settle again mails nobody.
    again = deliver(handler, dataclasses.replace(delivery, redelivered=True))
    assert len(mails_to(catcher, email)) == 1
    assert first.outgoing == () and again.outgoing == ()


@pytest.fixture
def own_vhost(broker: Broker, make_vhost: VhostMaker) -> str:
    """A vhost of this test's own: its queues may have a delivery limit the others do not."""
    return broker.url(make_vhost())


@pytest.mark.slow
def test_a_long_store_outage_while_the_settle_is_delivered_ends_in_one_email(
    notifier: Callable[..., AlbumNotifier],
    sqlite_store: Store,
    catcher: MailCatcher,
    own_vhost: str,
) -> None:
    """The store is away for longer than the queue's delivery limit lets a message bounce
    back: the settle must wait in the delay tiers, not end in the dead-letter queue."""
    _, email, delivery = settled_album(sqlite_store)
    settings = CommonSettings(amqp_url=own_vhost, retry_delays=POLICY[0], delivery_limit=2)
    declare_topology(settings)
    handler = notifier(store=StoreOutage(sqlite_store, 8.0), **SHORT)
    consumer = Consumer(
        own_vhost,
        handler.route(),
        1,
        on_connect=TopologyDeclarer.from_settings(settings),
        grace_s=2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(consumer.consuming.is_set, what="the consumer to start")
        publisher = Publisher(own_vhost)
        try:
            publisher.publish_confirmed(
                [
                    Outgoing(
                        topology.WORK_EXCHANGE, topology.ALBUM_SETTLED.routing_key, delivery.body
                    )
                ]
            )
        finally:
            publisher.close()
        dead_letters = topology.dead_letter_queue_name(topology.ALBUM_SETTLED)
        wait_for(
            lambda: mails_to(catcher, email) or message_count(own_vhost, dead_letters),
            timeout=60,
            what="the email or a dead letter",
        )
        assert message_count(own_vhost, dead_letters) == 0
        assert len(mails_to(catcher, email)) == 1
    finally:
        stop.set()
        thread.join(10)
