"""Tunable values change between starts; older versions' queues stay (issue 9, case 7).

Each test runs on a vhost of its own: it declares a topology as one version or setting would,
then starts again as the next one.
"""

import logging
import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any
from urllib.parse import quote

import pika
import pytest

from dev.ports import free_port
from dev.rabbit_admin import Broker
from shared.broker.connection import declare_topology
from shared.broker.consumer import Consumer, Route
from shared.broker.declarer import TopologyDeclarer
from shared.broker.errors import BrokerError
from shared.config.settings import CommonSettings
from shared.contracts import topology
from shared.contracts.messages import ImageUploadRequested
from shared.policies.retry_policy import RetryPolicy
from tests.conftest import VhostMaker

from .helpers import get_all, message_count, wait_for

pytestmark = pytest.mark.integration

UPLOADS = topology.IMAGE_UPLOADS

#: The work queue's arguments as the version before policies declared them (DELIVERY_LIMIT=20).
OLD_WORK_QUEUE_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-delivery-limit": 20,
    "x-dead-letter-exchange": "albums.dead",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
#: And its dead-letter queue's.
OLD_DEAD_LETTER_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-max-length": 1_000_000,
    "x-overflow": "reject-publish",
}


@pytest.fixture()
def fresh(broker: Broker, make_vhost: VhostMaker) -> tuple[str, str]:
    name = make_vhost()
    return name, broker.url(name)


def settings(url: str, **values: Any) -> CommonSettings:
    return CommonSettings(amqp_url=url, **{"retry_delays": (1, 3), **values})


def consumer_starts(
    settings_: CommonSettings,
    handler: Callable[[ImageUploadRequested, int], None] = lambda _m, _a: None,
) -> bool:
    """Run the service's consumer (its on_connect as the services build it) until it consumes;
    whether it did within 10 s."""
    stop = threading.Event()
    route = Route(UPLOADS, ImageUploadRequested, handler, RetryPolicy((1, 3), max_attempts=3))
    consumer = Consumer(
        settings_.amqp_url,
        route,
        1,
        on_connect=TopologyDeclarer.from_settings(settings_),
        grace_s=1,
    )
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        return consumer.consuming.wait(10)
    finally:
        stop.set()
        thread.join(10)


def test_a_service_restarted_with_another_delivery_limit_declares_without_conflict(
    fresh: tuple[str, str],
) -> None:
    _, url = fresh
    declare_topology(settings(url, delivery_limit=20))
    declare_topology(settings(url, delivery_limit=5))


def test_a_consumer_restarted_with_other_tunables_starts_consuming(fresh: tuple[str, str]) -> None:
    _, url = fresh
    declare_topology(settings(url, delivery_limit=20, dead_letter_max_length=1000))
    assert consumer_starts(
        settings(url, retry_delays=(1, 3, 10), delivery_limit=7, dead_letter_max_length=50)
    )


def test_the_policies_are_applied_and_follow_the_settings(
    broker: Broker, fresh: tuple[str, str]
) -> None:
    vhost, url = fresh
    declare_topology(settings(url, delivery_limit=20))
    declare_topology(settings(url, delivery_limit=5, dead_letter_max_length=300))
    policies = {p["name"]: p for p in broker.api("GET", f"policies/{quote(vhost, '')}").json()}
    assert policies["albums.work-queues"]["definition"] == {"delivery-limit": 5}
    assert policies["albums.dead-letters"]["definition"] == {"max-length": 300}


def test_the_policys_delivery_limit_dead_letters_a_message_that_keeps_coming_back(
    fresh: tuple[str, str],
) -> None:
    _, url = fresh
    declare_topology(settings(url, delivery_limit=20))
    declare_topology(settings(url, delivery_limit=2))  # as a restart with DELIVERY_LIMIT=2
    assert deliveries_until_dead_lettered(url) == 3  # the first delivery and 2 redeliveries


def deliveries_until_dead_lettered(url: str) -> int:
    """Publish one message to the work queue and requeue it until the broker dead-letters it."""
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        channel.basic_publish(topology.WORK_EXCHANGE, UPLOADS.routing_key, b"crashes")
        deliveries = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and deliveries < 50:
            method, _props, _body = channel.basic_get(UPLOADS.name)
            if method is None:
                if message_count(url, topology.dead_letter_queue_name(UPLOADS)):
                    return deliveries
                time.sleep(0.1)
                continue
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
    raise AssertionError(f"not dead-lettered after {deliveries} deliveries")


def declare_as_the_old_version(url: str) -> None:
    """The queues an existing deployment has: the old arguments, written out."""
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        channel.queue_declare(UPLOADS.name, durable=True, arguments=OLD_WORK_QUEUE_ARGUMENTS)
        channel.queue_declare(
            topology.dead_letter_queue_name(UPLOADS),
            durable=True,
            arguments=OLD_DEAD_LETTER_ARGUMENTS,
        )


def test_an_old_versions_queues_are_taken_as_they_are_and_the_consumer_starts(
    fresh: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = fresh
    declare_as_the_old_version(url)
    caplog.set_level(logging.WARNING)
    declare_topology(settings(url))
    assert consumer_starts(settings(url))
    assert f"queue {UPLOADS.name} keeps x-delivery-limit=20 from an older version" in caplog.text
    assert "x-max-length=1000000 from an older version" in caplog.text


def test_on_an_old_queue_the_lower_of_argument_and_policy_counts(fresh: tuple[str, str]) -> None:
    _, url = fresh
    declare_as_the_old_version(url)  # x-delivery-limit 20
    declare_topology(settings(url, delivery_limit=2))
    assert deliveries_until_dead_lettered(url) == 3


def test_a_queue_that_differs_in_more_than_policies_is_still_refused(
    fresh: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = fresh
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        connection.channel().queue_declare(
            UPLOADS.name, durable=True, arguments={"x-queue-type": "classic"}
        )
    with pytest.raises(BrokerError, match="PRECONDITION_FAILED"):
        declare_topology(settings(url))
    assert f"queue {UPLOADS.name} exists with arguments" in caplog.text


def test_without_the_management_api_the_services_still_declare_and_consume(
    fresh: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = fresh
    away = settings(url, rabbitmq_management_url=f"http://127.0.0.1:{free_port()}")
    declare_topology(away)
    assert consumer_starts(away)
    assert "broker policies NOT applied" in caplog.text
    assert "does not answer at http://127.0.0.1:" in caplog.text


@pytest.mark.slow
def test_a_tier_no_longer_configured_returns_what_it_holds_to_the_work_queue(
    fresh: tuple[str, str],
) -> None:
    _, url = fresh
    declare_topology(settings(url, retry_delays=(1, 3)))  # tiers 1, 2, 3 and 4 s
    tier = topology.retry_queue_name(UPLOADS, 4)
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        connection.channel().basic_publish(topology.RETRY_EXCHANGE, tier, b"waiting")
    declare_topology(settings(url, retry_delays=(1,)))  # tiers 1 and 2 s only now
    back = wait_for(lambda: get_all(url, UPLOADS.name), timeout=15, what="the message back")
    assert [body for _props, body in back] == [b"waiting"]
