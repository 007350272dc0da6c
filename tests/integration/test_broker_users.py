"""The services' broker users from deploy/rabbitmq/definitions.json, on the real broker in a
vhost of the test's own: each service's code path works with its own user, and what each may
not do is refused by the broker (ACCESS_REFUSED)."""

from __future__ import annotations

import json
import smtplib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
import requests
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import SecretStr

from dev.rabbit_admin import Broker
from services.notifier.fake_mailer import FakeMailer
from services.notifier.handler import AlbumNotifier
from shared.broker import users
from shared.broker.connection import declare_topology
from shared.broker.consumer import Consumer
from shared.broker.management import ManagementApi
from shared.broker.policies import apply_policies
from shared.broker.publisher import Publisher
from shared.config.settings import CommonSettings
from shared.contracts import dead_letters, messages, outcomes, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Route
from shared.policies.retry_policy import RetryPolicy
from shared.store import Store
from tests.conftest import VhostMaker
from tests.present import present

from .helpers import get_all, wait_for

pytestmark = pytest.mark.integration

ACCESS_REFUSED = 403
DELAYS = (1,)


@pytest.fixture(scope="module")
def accounts(broker: Broker, make_vhost: VhostMaker) -> Iterator[dict[str, str]]:
    """Each role's AMQP URL: the file imported as the broker's definitions (users renamed to
    the test's own, passwords left blank as shipped), then given passwords by `users.create`."""
    vhost = make_vhost(for_session=True)
    suffix = uuid.uuid4().hex[:8]

    def rename(name: str) -> str:
        return f"{name}-test-{suffix}"

    shipped = json.loads(users.DEFINITIONS.read_text())
    shipped["vhosts"] = [{"name": vhost}]
    for user in shipped["users"]:
        user["name"] = rename(user["name"])
    for grant in shipped["permissions"]:
        grant["user"], grant["vhost"] = rename(grant["user"]), vhost
    for policy in shipped["policies"]:
        policy["vhost"] = vhost
    broker.api("POST", "definitions", json=shipped)
    imported = broker.api("GET", f"policies/{quote(vhost, '')}").json()
    assert {p["name"] for p in imported} == {p["name"] for p in shipped["policies"]}
    definitions = users.load()
    passwords = {u.role: SecretStr(f"pw-{u.role}-{suffix}") for u in definitions.users}
    admin = ManagementApi(broker.management_url, broker.user, SecretStr(broker.password), vhost)
    made = users.create(admin, definitions.users, passwords, rename)
    try:
        yield {
            u.role: f"amqp://{rename(u.name)}:{passwords[u.role].get_secret_value()}"
            f"@{broker.host}:{broker.port}/{quote(vhost, '')}"
            for u in definitions.users
        }
    finally:
        for name in made:
            requests.delete(
                f"{broker.management_url}/api/users/{quote(name, '')}",
                auth=(broker.user, broker.password),
                timeout=30,
            )


@pytest.fixture(scope="module")
def declared(accounts: dict[str, str]) -> dict[str, str]:
    """The uploader, the topology's owner, declares it and applies the policies as itself."""
    settings = CommonSettings(amqp_url=accounts["uploader"], retry_delays=DELAYS)
    apply_policies(settings)  # raises if its user may not
    declare_topology(settings, policies=False)
    return accounts


def _refused(call: Callable[[], object]) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        call()
    assert refused.value.reply_code == ACCESS_REFUSED, refused.value


def _channel(url: str) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _consume(url: str, route: Route[Any], until: Callable[[], object]) -> None:
    """Run the consumer runtime with `url`'s user until `until()` holds."""
    stop = threading.Event()
    publisher = Publisher(url)
    consumer = Consumer(url, route, 2, grace_s=5, publisher=publisher)
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(until, timeout=30, what=f"{route.queue.name} to be worked through")
    finally:
        stop.set()
        thread.join(10)
        publisher.close()


@pytest.mark.slow
def test_each_service_works_with_its_own_user(
    declared: dict[str, str], sqlite_store: Store, broker: Broker
) -> None:
    # The API publishes an album's messages (its outbox, as services/api/services.py builds it).
    user, _ = sqlite_store.create_user("owner@example.com")
    album_id, rows = sqlite_store.create_album(
        user.id, "Users", None, [f"{user.prefix}a.png", f"{user.prefix}b.png"]
    )
    api_publisher = Publisher(declared["api"])
    try:
        assert Outbox(sqlite_store, api_publisher, relays=(topology.WORK_EXCHANGE,)).send_rows(rows)
    finally:
        api_publisher.close()

    # The uploader consumes them: the first image retries once (a copy through albums.retry),
    # the second dies (a letter in albums.dead).
    first, second = (i.id for i in present(sqlite_store.album(album_id)).images)
    seen: list[int] = []

    def upload(message: messages.ImageUploadRequested, attempt: int) -> None:
        seen.append(message.image_id)
        if message.image_id == first and attempt == 1:
            raise outcomes.Transient("try again")
        if message.image_id == second:
            raise outcomes.Permanent("refused for good")

    _consume(
        declared["uploader"],
        Route(
            topology.IMAGE_UPLOADS, messages.ImageUploadRequested, upload, RetryPolicy(DELAYS, 3)
        ),
        lambda: sorted(seen) == [first, first, second],
    )
    (letter,) = get_all(
        broker.url(_vhost(declared)), topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
    )
    assert letter[0].headers[dead_letters.REASON_HEADER] == "refused for good"

    # The uploader publishes the settle; the notifier consumes it, retries the mail once (a
    # copy through albums.retry) and sends it.
    image_id = present(sqlite_store.album(album_id)).images[0].id
    sqlite_store.start_attempt(image_id)
    sqlite_store.record_uploaded(image_id, "photo-1")
    sqlite_store.start_attempt(second)
    settle = sqlite_store.record_failed(second, "refused for good", None)
    uploader_publisher = Publisher(declared["uploader"])
    try:
        assert Outbox(sqlite_store, uploader_publisher).send_rows(settle)
    finally:
        uploader_publisher.close()
    mailer = FakeMailer()
    mailer.failures.append(smtplib.SMTPResponseException(421, b"try later"))
    notifier = AlbumNotifier(
        sqlite_store,
        mailer,
        "albums@localhost",
        "http://albums.test",
        (DELAYS, 3),
        claim_lease=timedelta(minutes=1),
    )
    _consume(declared["notifier"], notifier.route(), lambda: len(mailer.sent) == 1)
    assert mailer.sent[0]["To"] == "owner@example.com"


def _vhost(accounts: dict[str, str]) -> str:
    vhost: str = pika.URLParameters(accounts["api"]).virtual_host
    return vhost


def test_the_api_may_only_publish_to_the_work_exchange(declared: dict[str, str]) -> None:
    connection, channel = _channel(declared["api"])
    try:
        _refused(lambda: channel.basic_get(topology.IMAGE_UPLOADS.name, auto_ack=False))
        channel = connection.channel()
        _refused(lambda: channel.queue_declare("albums-api-own", durable=True))
        channel = connection.channel()
        channel.confirm_delivery()
        _refused(lambda: channel.basic_publish(topology.DEAD_EXCHANGE, "image.upload", b"{}"))
    finally:
        connection.close()


def test_the_notifier_may_not_publish_work_nor_declare_nor_read_the_uploads(
    declared: dict[str, str],
) -> None:
    connection, channel = _channel(declared["notifier"])
    try:
        _refused(
            lambda: channel.basic_publish(
                topology.WORK_EXCHANGE, topology.IMAGE_UPLOADS.routing_key, b"{}", mandatory=True
            )
        )
        channel = connection.channel()
        _refused(lambda: channel.queue_declare("notifier.own", durable=True))
        # Nor its own retry queues: no configure right at all. It could not be given one for
        # them without the write right on albums.work, their dead-letter exchange (RabbitMQ
        # checks it at the declare), so the uploader declares the whole topology.
        spec = next(
            s
            for s in topology.queue_specs(DELAYS)
            if s.name == topology.retry_queue_name(topology.ALBUM_SETTLED, DELAYS[0])
        )
        channel = connection.channel()
        _refused(lambda: channel.queue_declare(spec.name, durable=True, arguments=spec.arguments))
        channel = connection.channel()
        _refused(lambda: channel.basic_get(topology.IMAGE_UPLOADS.name, auto_ack=False))
    finally:
        connection.close()


def test_the_monitoring_user_sees_the_queues_and_may_not_publish_or_declare(
    declared: dict[str, str], broker: Broker
) -> None:
    url = declared["monitoring"]
    parts = pika.URLParameters(url)
    queues = requests.get(
        f"{broker.management_url}/api/queues/{quote(parts.virtual_host, '')}",
        auth=(parts.credentials.username, parts.credentials.password),
        timeout=30,
    )
    assert queues.status_code == 200
    assert topology.IMAGE_UPLOADS.name in {q["name"] for q in queues.json()}
    connection, channel = _channel(url)
    try:
        _refused(
            lambda: channel.basic_publish(
                topology.WORK_EXCHANGE, topology.IMAGE_UPLOADS.routing_key, b"{}"
            )
        )
        channel = connection.channel()
        _refused(lambda: channel.exchange_declare("albums.monitoring", "direct"))
        channel = connection.channel()
        _refused(lambda: channel.basic_get(topology.ALBUM_SETTLED.name, auto_ack=False))
    finally:
        connection.close()
