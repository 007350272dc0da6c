"""Each user publishes to their own connected Page (issue 10, items 1 and 6): the uploader's
handler through the runtime's decision, one fake Graph client per Page token, the real store on
a SQLite file. No broker, no HTTP."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from services.uploader.fake_graph_client import FakeGraphClient
from services.uploader.handler import ImageUploader, Policy
from services.uploader.pages import Pages
from shared.adapters.fake_s3 import FakeS3
from shared.adapters.graph_client import GraphError
from shared.broker.fake_publisher import FakePublisher
from shared.config.token_cipher import TokenCipher, TokenCipherError
from shared.contracts import topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, decide
from tests.present import present
from tests.unit.stores import new_store

BUCKET = "unit"
KEY = Fernet.generate_key().decode()


class Facebook:
    """One fake Graph client per Page token: a photo lands on the Page whose token sent it."""

    def __init__(self) -> None:
        self.pages: dict[str, FakeGraphClient] = {}
        self.tokens: dict[str, str] = {}

    def client(self, page_id: str, token: str) -> FakeGraphClient:
        assert self.tokens.get(token) == page_id, "a token used for another Page"
        return self.pages.setdefault(page_id, FakeGraphClient())


class World:
    def __init__(self) -> None:
        self.store = new_store()
        self.cipher = TokenCipher(KEY)
        self.publisher = FakePublisher()
        self.facebook = Facebook()
        self.s3 = FakeS3()
        self.pages = Pages(self.store, self.cipher, self.facebook.client)
        self.uploader = ImageUploader(
            self.store,
            Outbox(self.store, self.publisher, grace=timedelta(0)),  # type: ignore[arg-type]
            None,
            self.s3,
            BUCKET,
            Policy((5, 30), max_attempts=3),
            pages=self.pages,
        )

    def user_with_page(self, email: str, page_id: str, token: str) -> int:
        user, _ = self.store.create_user(email)
        self.facebook.tokens[token] = page_id
        self.store.connect_page(user.id, page_id, f"Page {page_id}", self.cipher.encrypt(token))
        return user.id

    def album(self, user_id: int, page_id: str, count: int) -> tuple[str, list[Delivery]]:
        keys = [f"users/{user_id}/p{n}.png" for n in range(count)]
        for key in keys:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"png" * 10, ContentType="image/png")
        album_id, rows = self.store.create_album(user_id, "Mine", None, keys, page_id=page_id)
        return album_id, [Delivery(row.body, {}) for row in rows]

    def deliver(self, delivery: Delivery) -> Any:
        return decide(self.uploader.route(), delivery)

    def photos(self, page_id: str) -> list[dict[str, Any]]:
        page = self.facebook.pages.get(page_id)
        return page.photos if page else []


@pytest.fixture
def world() -> World:
    return World()


def test_two_users_with_two_pages_each_publish_only_to_their_own(world: World) -> None:
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    bob = world.user_with_page("bob@example.com", "222", "token-bob")
    ann_album, ann_deliveries = world.album(ann, "111", 3)
    bob_album, bob_deliveries = world.album(bob, "222", 2)
    # Interleaved, as two uploads side by side would take them.
    for delivery in (
        ann_deliveries[0],
        bob_deliveries[0],
        ann_deliveries[1],
        bob_deliveries[1],
        ann_deliveries[2],
    ):
        world.deliver(delivery)
    # Each Page holds exactly its owner's photos (captions carry no album mark to tell).
    assert len(world.photos("111")) == 3 and len(world.photos("222")) == 2
    assert (
        present(world.store.album(ann_album)).state
        == present(world.store.album(bob_album)).state
        == "done"
    )


def test_a_token_revoked_mid_album_pauses_then_resumes_on_reconnect_each_image_once(
    world: World,
) -> None:
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    album_id, (first, second, third) = world.album(ann, "111", 3)
    world.deliver(first)
    world.facebook.pages["111"].upload_failures.append(
        GraphError("Error validating access token", http_status=400, code=190, subcode=460)
    )
    assert world.deliver(second).kind == "ack"
    assert world.deliver(third).kind == "ack"  # not sent: the Page waits for its owner
    album = present(world.store.album(album_id))
    assert [(i.state, i.attempts) for i in album.images] == [
        ("uploaded", 1),
        ("paused", 0),
        ("paused", 0),
    ]
    assert album.state == "publishing"
    assert present(world.store.page(ann)).state == "needs_reconnect"
    assert len(world.photos("111")) == 1

    world.facebook.tokens["token-ann-2"] = "111"
    rows = world.store.connect_page(ann, "111", "Page 111", world.cipher.encrypt("token-ann-2"))
    assert len(rows) == 2  # the paused images go out again through the outbox
    for row in rows:
        world.deliver(Delivery(row.body, {}))
    album = present(world.store.album(album_id))
    assert album.state == "done" and {i.state for i in album.images} == {"uploaded"}
    assert len(world.photos("111")) == 3  # each image once, none twice


def test_a_policy_block_stops_the_album_and_pauses_the_pages_other_albums(world: World) -> None:
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    album_id, (first, _second, _third) = world.album(ann, "111", 3)
    other_id, (other,) = world.album(ann, "111", 1)
    world.facebook.pages.setdefault("111", FakeGraphClient()).upload_failures.append(
        GraphError("blocked", http_status=400, code=368)
    )
    assert world.deliver(first).kind == "dead"
    album = present(world.store.album(album_id))
    assert album.state == "done_with_failures"
    assert {i.state for i in album.images} == {"failed"}
    assert present(album.images[1].error).startswith("not sent: Facebook temporarily blocked")
    assert present(world.store.page(ann)).state == "blocked"
    assert world.deliver(other).kind == "ack"
    assert present(world.store.album(other_id)).images[0].state == "paused"
    assert world.photos("111") == []


def test_an_album_without_a_connected_page_waits_rather_than_fails(world: World) -> None:
    user, _ = world.store.create_user("nobody@example.com")
    album_id, (delivery,) = world.album(user.id, "333", 1)
    assert world.deliver(delivery).kind == "ack"
    assert present(world.store.album(album_id)).images[0].state == "paused"


def test_page_tokens_are_encrypted_at_rest_and_never_logged_or_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ann = world.user_with_page("ann@example.com", "111", "token-ann-SECRET")
    _, deliveries = world.album(ann, "111", 2)
    world.facebook.pages.setdefault("111", FakeGraphClient()).upload_failures.append(
        GraphError("Error validating access token", http_status=400, code=190)
    )
    for delivery in deliveries:
        world.deliver(delivery)
    with world.store.engine.connect() as connection:
        (raw,) = connection.execute(text("SELECT token_sealed FROM page_connections")).one()
    assert b"token-ann-SECRET" not in bytes(raw)
    assert world.cipher.decrypt(bytes(raw)) == "token-ann-SECRET"
    assert "SECRET" not in caplog.text
    assert all(
        b"SECRET" not in m.body and "SECRET" not in repr(m.headers)
        for m in world.publisher.published
    )
    assert "SECRET" not in repr(world.pages)


def test_a_rotated_key_still_opens_old_tokens_and_a_removed_key_is_a_clear_error() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = TokenCipher(old).encrypt("t")
    rotated = TokenCipher(f"{new},{old}")
    assert rotated.decrypt(sealed) == "t"
    assert TokenCipher(new).decrypt(rotated.rotate(sealed)) == "t"
    with pytest.raises(TokenCipherError, match="no key"):
        TokenCipher(new).decrypt(sealed)
    with pytest.raises(TokenCipherError, match="Fernet key") as info:
        TokenCipher("not-a-key")
    assert "not-a-key" not in str(info.value)


def test_the_single_tenant_page_serves_albums_posted_without_a_connection(world: World) -> None:
    world.pages = Pages(world.store, world.cipher, world.facebook.client, ("999", "ops-token"))
    world.facebook.tokens["ops-token"] = "999"
    world.uploader = ImageUploader(
        world.store,
        Outbox(world.store, world.publisher, grace=timedelta(0)),  # type: ignore[arg-type]
        None,
        world.s3,
        BUCKET,
        Policy((5, 30), max_attempts=3),
        pages=world.pages,
    )
    user, _ = world.store.create_user("solo@example.com")
    album_id, (delivery,) = world.album(user.id, None, 1)  # type: ignore[arg-type]
    world.deliver(delivery)
    assert present(world.store.album(album_id)).state == "done" and len(world.photos("999")) == 1
    assert topology.IMAGE_UPLOADS.name  # the route the handler serves


class Mailbox:
    """A mailer that keeps what it was asked to send, or fails while told to."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.failing = False

    def send(self, message: Any) -> None:
        if self.failing:
            raise ConnectionRefusedError("smtp away")
        self.sent.append(message)


def test_a_revoked_token_mails_its_owner_once_asking_to_reconnect(world: World) -> None:
    from services.notifier.reconnect_mail import ReconnectMailer

    ann = world.user_with_page("ann@example.com", "111", "token-ann-SECRET")
    _, deliveries = world.album(ann, "111", 3)
    world.facebook.pages.setdefault("111", FakeGraphClient()).upload_failures.extend(
        [GraphError("Error validating access token", http_status=400, code=190)] * 3
    )
    mails = Mailbox()
    notifier = ReconnectMailer(world.store, mails, "albums@example.com", "http://app.example")
    mails.failing = True
    world.deliver(deliveries[0])
    assert notifier.run_once() == 0  # SMTP away: released, not lost
    mails.failing = False
    for delivery in deliveries[1:]:
        world.deliver(delivery)
    assert notifier.run_once() == 1 and notifier.run_once() == 0
    (mail,) = mails.sent
    assert mail["To"] == "ann@example.com"
    assert "http://app.example/connect/facebook" in mail.get_content()
    assert "SECRET" not in mail.as_string()
    # Reconnected, then refused again: a new stop, a new email.
    world.facebook.tokens["token-2"] = "111"
    world.store.connect_page(ann, "111", "Page 111", world.cipher.encrypt("token-2"))
    assert notifier.run_once() == 0
    world.store.set_page_state(ann, "111", "needs_reconnect")
    assert notifier.run_once() == 1


def test_a_usage_hold_on_one_page_does_not_hold_another_users_page(world: World) -> None:
    from services.uploader.throttle_gate import ThrottleGate

    world.uploader = ImageUploader(
        world.store,
        Outbox(world.store, world.publisher, grace=timedelta(0)),  # type: ignore[arg-type]
        None,
        world.s3,
        BUCKET,
        Policy((5, 30), max_attempts=3),
        gate=ThrottleGate(world.store, ""),
        pages=world.pages,
    )
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    bob = world.user_with_page("bob@example.com", "222", "token-bob")
    (_, (ann_image,)), (_, (bob_image,)) = world.album(ann, "111", 1), world.album(bob, "222", 1)
    world.store.hold_graph("111", 60)  # Facebook said Ann's Page is near its limit
    assert world.deliver(ann_image).kind == "retry" and world.photos("111") == []
    assert world.deliver(bob_image).kind == "ack" and len(world.photos("222")) == 1


class ReconnectedMidUpload(FakeGraphClient):
    """Facebook refuses the old token (190) for an upload that was on its way while the owner
    reconnected the Page (a new token): the reconnect commits before the refusal arrives."""

    def __init__(self, reconnect: Any) -> None:
        super().__init__()
        self._reconnect = reconnect

    def upload_photo(self, *args: Any, **kwargs: Any) -> str:
        if self._reconnect is not None:
            self._reconnect, reconnect = None, self._reconnect
            reconnect()
            raise GraphError(
                "Error validating access token", http_status=400, code=190, subcode=460
            )
        return super().upload_photo(*args, **kwargs)


def test_a_refusal_of_the_old_token_after_a_reconnect_neither_pauses_nor_asks_again(
    world: World,
) -> None:
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    album_id, (first, second) = world.album(ann, "111", 2)
    world.facebook.tokens["token-ann-2"] = "111"
    resumed: list[Any] = []
    world.facebook.pages["111"] = ReconnectedMidUpload(
        lambda: resumed.extend(
            world.store.connect_page(ann, "111", "Page 111", world.cipher.encrypt("token-ann-2"))
        )
    )
    outcome = world.deliver(first)
    assert present(world.store.page(ann)).state == "connected"  # the new token was never refused
    assert world.store.claim_reconnect_mails() == []  # so nobody is asked to reconnect again
    # The image goes again with the new token: a retry copy, or a message queued anew.
    again = [Delivery(row.body, {}) for row in resumed]
    if outcome.kind == "retry":
        again.append(first)
    assert present(world.store.album(album_id)).images[0].state != "paused"
    for delivery in [*again, second]:
        world.deliver(delivery)
    album = present(world.store.album(album_id))
    assert album.state == "done" and {i.state for i in album.images} == {"uploaded"}
    assert len(world.photos("111")) == 2


def test_an_image_that_saw_its_page_waiting_just_before_a_reconnect_is_not_left_paused(
    world: World,
) -> None:
    ann = world.user_with_page("ann@example.com", "111", "token-ann")
    album_id, (first,) = world.album(ann, "111", 1)
    world.store.set_page_state(ann, "111", "needs_reconnect")
    world.facebook.tokens["token-ann-2"] = "111"
    read = world.store.page_credentials
    resumed: list[Any] = []

    def then_reconnected(user_id: int, page_id: str) -> Any:
        # The handler read the waiting Page; the owner's reconnect commits right after.
        seen = read(user_id, page_id)
        if not resumed:
            resumed.extend(
                world.store.connect_page(
                    ann, "111", "Page 111", world.cipher.encrypt("token-ann-2")
                )
            )
        return seen

    world.store.page_credentials = then_reconnected  # type: ignore[method-assign]
    outcome = world.deliver(first)
    world.store.page_credentials = read  # type: ignore[method-assign]
    # The reconnect found nothing paused to queue again: the image must not pause now.
    assert resumed == [] and present(world.store.album(album_id)).images[0].state != "paused"
    if outcome.kind == "retry":
        world.deliver(first)
    assert present(world.store.album(album_id)).state == "done" and len(world.photos("111")) == 1


def test_what_a_blocked_page_says_does_not_promise_that_nothing_was_lost() -> None:
    """A block (368) stops the album under way, its photos not sent failed: the email says so,
    and keeps "none lost" for a refused token, where every photo waits (the pages' banner:
    tests/unit/test_web.py)."""
    from services.notifier.reconnect_mail import compose
    from shared.store.views import ReconnectMail

    blocked = ReconnectMail(1, "ann@example.com", "Page 111", "blocked")
    refused = ReconnectMail(1, "ann@example.com", "Page 111", "needs_reconnect")
    said = compose(blocked, "albums@example.com", "http://app.example/connect/facebook")
    assert "stopped" in said.get_content() and "No photo is lost" not in said.get_content()
    told = compose(refused, "albums@example.com", "http://app.example/connect/facebook")
    assert "No photo is lost" in told.get_content()
