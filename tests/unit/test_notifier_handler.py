"""The notifier's handler through the runtime's decision, on a fake mailer and the real store on
a SQLite file: one email per settle, retries and dead letters. No SMTP, no broker."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from typing import Any

import pytest

from services.notifier.fake_mailer import FakeMailer
from services.notifier.handler import AlbumNotifier
from shared import dead_letters, messages, retry_policy, topology
from shared.fate import Delivery, Fate, decide
from shared.store import Store


class World:
    def __init__(self, tmp_path: Any) -> None:
        self.store = Store(f"sqlite:///{tmp_path}/albums.db")
        self.store.create_schema()
        self.mailer = FakeMailer()
        self.notifier = AlbumNotifier(self.store, self.mailer, "albums@localhost",
                                      "http://albums.test", ((5, 30), 3))

    def settled(self) -> tuple[messages.AlbumSettled, Delivery]:
        user, _ = self.store.create_user("owner@example.com")
        album_id, _ = self.store.create_album(user.id, "Holiday", None, [f"{user.prefix}a.png"])
        image_id = self.store.album(album_id).images[0].id
        self.store.start_attempt(image_id)
        (row,) = self.store.record_uploaded(image_id, "photo-1")
        event = messages.decode(row.body)
        assert isinstance(event, messages.AlbumSettled)
        return event, Delivery(row.body, {})

    def deliver(self, delivery: Delivery) -> Fate:
        return decide(self.notifier.route(), delivery)


@pytest.fixture
def world(tmp_path: Any) -> World:
    return World(tmp_path)


def test_a_settle_delivered_twice_is_mailed_once(world):
    _, delivery = world.settled()
    assert world.deliver(delivery) == Fate()
    assert world.deliver(delivery) == Fate()
    (mail,) = world.mailer.sent
    assert mail["To"] == "owner@example.com" and "Holiday" in mail["Subject"]


def test_a_temporary_smtp_refusal_retries_and_frees_the_claim(world):
    _, delivery = world.settled()
    world.mailer.failures.append(smtplib.SMTPResponseException(421, b"try later"))
    fate = world.deliver(delivery)
    assert fate.kind == "retry" and fate.publish[0].headers[retry_policy.ATTEMPT_HEADER] == 2
    assert world.deliver(Delivery(delivery.body, dict(fate.publish[0].headers))) == Fate()
    assert len(world.mailer.sent) == 1


def test_a_permanent_smtp_refusal_is_dead_lettered_by_the_runtime(world):
    _, delivery = world.settled()
    world.mailer.failures.append(smtplib.SMTPResponseException(550, b"no such user"))
    fate = world.deliver(delivery)
    (letter,) = fate.publish
    assert fate.kind == "dead" and letter.exchange == topology.DEAD_EXCHANGE
    assert letter.routing_key == topology.ALBUM_SETTLED.routing_key
    assert "550" in letter.headers[dead_letters.REASON_HEADER]


def test_a_settle_another_notifier_is_sending_is_looked_at_later(world):
    event, delivery = world.settled()
    world.store.claim_notification(event.album_id, event.settle_seq, timedelta(minutes=2))
    fate = world.deliver(delivery)
    assert fate.kind == "retry" and fate.publish[0].headers[retry_policy.ATTEMPT_HEADER] == 1
    assert world.mailer.sent == []


def test_a_settle_of_an_album_the_store_does_not_know_is_poison(world):
    body = messages.encode(messages.AlbumSettled(album_id="gone", settle_seq=1, uploaded=[],
                                                 failed=[]))
    fate = world.deliver(Delivery(body, {}))
    assert fate.kind == "poison" and "not in the store" in fate.publish[0].headers[
        dead_letters.REASON_HEADER]
