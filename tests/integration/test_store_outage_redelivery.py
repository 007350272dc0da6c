"""Issue 9, case 1: a handler error that is not the message's fault (the store is down) must
not spend the work queue's delivery limit. Each nack-requeue counts toward it, so an outage
longer than a few redeliveries used to make the broker dead-letter the message for ever."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from dev.rabbit_admin import Broker
from shared.broker.connection import declare_topology
from shared.broker.consumer import Consumer, Route
from shared.broker.publisher import Publisher
from shared.config.settings import CommonSettings
from shared.contracts import topology
from shared.contracts.messages import ImageUploadRequested, encode
from shared.contracts.outgoing import Outgoing
from shared.policies.retry_policy import RetryPolicy
from tests.conftest import VhostMaker

from .helpers import message_count, wait_for

pytestmark = pytest.mark.integration

QUEUE = topology.IMAGE_UPLOADS
DELAYS = (1, 2)
#: Small, so the outage below outlasts it many times over.
DELIVERY_LIMIT = 2
OUTAGE_S = 8.0


@pytest.fixture()
def small_limit_url(broker: Broker, make_vhost: VhostMaker) -> Iterator[str]:
    """A vhost of its own, whose policy gives the work queue a small delivery limit."""
    url = broker.url(make_vhost())
    declare_topology(
        CommonSettings(amqp_url=url, retry_delays=DELAYS, delivery_limit=DELIVERY_LIMIT)
    )
    yield url


class StoreOutage:
    """A handler whose store is down for the first `OUTAGE_S` seconds."""

    def __init__(self) -> None:
        self.back_at = time.monotonic() + OUTAGE_S
        self.failures = 0
        self.handled: list[tuple[int, int]] = []

    def __call__(self, message: ImageUploadRequested, attempt: int) -> None:
        if time.monotonic() < self.back_at:
            self.failures += 1
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        self.handled.append((message.image_id, attempt))


@pytest.mark.slow
def test_a_long_store_outage_does_not_dead_letter_the_message(small_limit_url: str) -> None:
    handler = StoreOutage()
    stop = threading.Event()
    route = Route(QUEUE, ImageUploadRequested, handler, RetryPolicy(DELAYS, max_attempts=3))
    consumer = Consumer(
        small_limit_url,
        route,
        2,
        on_connect=functools.partial(topology.declare, retry_delays=DELAYS),
        grace_s=5,
    )
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(consumer.consuming.is_set, what="the consumer to start")
        publisher = Publisher(small_limit_url)
        try:
            publisher.publish_confirmed(
                [
                    Outgoing(
                        topology.WORK_EXCHANGE,
                        QUEUE.routing_key,
                        encode(ImageUploadRequested(album_id="a", image_id=1, key="k1")),
                    )
                ]
            )
        finally:
            publisher.close()
        # Handled on its first attempt: an outage spends no attempt.
        wait_for(
            lambda: handler.handled == [(1, 1)],
            timeout=OUTAGE_S + 30,
            what="the message handled once the store is back",
        )
        assert handler.failures > DELIVERY_LIMIT
        dead = topology.dead_letter_queue_name(QUEUE)
        assert message_count(small_limit_url, dead) == 0
        wait_for(lambda: message_count(small_limit_url, QUEUE.name) == 0, what="the ack")
    finally:
        stop.set()
        thread.join(10)
