"""The notifier's handler through the runtime's decision, on a fake mailer and the real store on
a SQLite file: one email per settle, retries and dead letters. No SMTP, no broker."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from typing import Any

import pytest

from services.notifier.fake_mailer import FakeMailer
from services.notifier.handler import AlbumNotifier
from shared.contracts import dead_letters, messages, topology
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, decide
from tests.present import present
from tests.unit.stores import new_store


class World:
    def __init__(self) -> None:
        self.store = new_store()
        self.mailer = FakeMailer()
        self.notifier = AlbumNotifier(
            self.store, self.mailer, "albums@localhost", "http://albums.test", ((5, 30), 3)
        )

    def settled(self) -> tuple[messages.AlbumSettled, Delivery]:
        user, _ = self.store.create_user("owner@example.com")
        album_id, _ = self.store.create_album(user.id, "Holiday", None, [f"{user.prefix}a.png"])
        image_id = present(self.store.album(album_id)).images[0].id
        self.store.start_attempt(image_id)
        (row,) = self.store.record_uploaded(image_id, "photo-1")
        event = messages.decode(row.body)
        assert isinstance(event, messages.AlbumSettled)
        return event, Delivery(row.body, {})

    def deliver(self, delivery: Delivery) -> Fate:
        return decide(self.notifier.route(), delivery)


@pytest.fixture
def world() -> World:
    return World()


def test_a_settle_delivered_twice_is_mailed_once(world: World) -> None:
    _, delivery = world.settled()
    assert world.deliver(delivery) == Fate()
    assert world.deliver(delivery) == Fate()
    (mail,) = world.mailer.sent
    assert mail["To"] == "owner@example.com" and "Holiday" in mail["Subject"]


def test_a_temporary_smtp_refusal_retries_and_frees_the_claim(world: World) -> None:
    _, delivery = world.settled()
    world.mailer.failures.append(smtplib.SMTPResponseException(421, b"try later"))
    fate = world.deliver(delivery)
    assert fate.kind == "retry" and fate.outgoing[0].headers[retry_policy.ATTEMPT_HEADER] == 2
    assert world.deliver(Delivery(delivery.body, dict(fate.outgoing[0].headers))) == Fate()
    assert len(world.mailer.sent) == 1


def test_a_permanent_smtp_refusal_is_dead_lettered_by_the_runtime(world: World) -> None:
    _, delivery = world.settled()
    world.mailer.failures.append(smtplib.SMTPResponseException(550, b"no such user"))
    fate = world.deliver(delivery)
    (letter,) = fate.outgoing
    assert fate.kind == "dead" and letter.exchange == topology.DEAD_EXCHANGE
    assert letter.routing_key == topology.ALBUM_SETTLED.routing_key
    assert "550" in letter.headers[dead_letters.REASON_HEADER]


def test_a_settle_another_notifier_is_sending_is_looked_at_later(world: World) -> None:
    event, delivery = world.settled()
    world.store.claim_notification(event.album_id, event.settle_seq, timedelta(minutes=2))
    fate = world.deliver(delivery)
    assert fate.kind == "retry" and fate.outgoing[0].headers[retry_policy.ATTEMPT_HEADER] == 1
    assert world.mailer.sent == []


def test_a_settle_of_an_album_the_store_does_not_know_is_poison(world: World) -> None:
    body = messages.encode(
        messages.AlbumSettled(album_id="gone", settle_seq=1, uploaded=[], failed=[])
    )
    fate = world.deliver(Delivery(body, {}))
    assert (
        fate.kind == "poison"
        and "not in the store" in fate.outgoing[0].headers[dead_letters.REASON_HEADER]
    )


def _forged(event: messages.AlbumSettled, **fields: Any) -> Delivery:
    return Delivery(messages.encode(event.model_copy(update=fields)), {})


def _body(mail: Any) -> str:
    return "".join(part.get_content() for part in mail.iter_parts())


def test_a_settle_that_never_happened_is_dead_lettered_and_mails_nothing(world: World) -> None:
    event, _ = world.settled()
    fate = world.deliver(_forged(event, settle_seq=event.settle_seq + 1))
    assert world.mailer.sent == []
    assert (fate.kind, fate.outgoing[0].headers[dead_letters.REASON_HEADER]) == (
        "poison",
        "message does not match the stored album: settle differs",
    )


def test_a_settle_naming_another_photo_is_dead_lettered_and_the_real_one_mailed(
    world: World,
) -> None:
    event, delivery = world.settled()
    (uploaded,) = event.uploaded
    forged = uploaded.model_copy(update={"photo_id": "someone-elses-photo"})
    fate = world.deliver(_forged(event, uploaded=[forged]))
    assert world.mailer.sent == []
    assert (fate.kind, fate.outgoing[0].headers[dead_letters.REASON_HEADER]) == (
        "poison",
        "message does not match the stored album: photo differs",
    )
    assert world.deliver(delivery) == Fate()
    (mail,) = world.mailer.sent
    assert "fbid=photo-1" in _body(mail)


def test_a_settle_naming_an_image_of_another_album_is_dead_lettered(world: World) -> None:
    event, _ = world.settled()
    other, _ = world.settled()
    fate = world.deliver(_forged(event, uploaded=other.uploaded))
    assert world.mailer.sent == []
    assert fate.outgoing[0].headers[dead_letters.REASON_HEADER] == (
        "message does not match the stored album: images differ"
    )


def test_the_email_says_why_a_photo_failed_in_the_stores_words_not_the_messages(
    world: World,
) -> None:
    user, _ = world.store.create_user("owner2@example.com")
    album_id, _ = world.store.create_album(user.id, "Trip", None, [f"{user.prefix}b.png"])
    image_id = present(world.store.album(album_id)).images[0].id
    world.store.start_attempt(image_id)
    (row,) = world.store.record_failed(image_id, "Facebook refused the file", 324)
    event = messages.decode(row.body)
    assert isinstance(event, messages.AlbumSettled)
    (failed,) = event.failed
    lure = failed.model_copy(update={"reason": "your Page is locked: sign in at evil.example"})
    assert world.deliver(_forged(event, failed=[lure])) == Fate()
    (mail,) = world.mailer.sent
    assert "evil.example" not in _body(mail)
    assert "Facebook refused the file" in _body(mail)
