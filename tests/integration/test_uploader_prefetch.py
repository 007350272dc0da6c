"""The uploader's work queue consumer, as the broker sees it."""

import threading
from typing import Any
from urllib.parse import quote

import pytest

from dev.rabbit_admin import Broker
from services.uploader.__main__ import uploads_consumer
from services.uploader.settings import UploaderSettings
from shared.broker.publisher import Publisher
from shared.contracts import topology
from shared.contracts.messages import ImageUploadRequested
from shared.policies.fate import Route
from shared.policies.retry_policy import RetryPolicy

from .helpers import wait_for

pytestmark = pytest.mark.integration

QUEUE = topology.IMAGE_UPLOADS.name


def _ignore(_message: ImageUploadRequested, _attempt: int) -> None:
    return None


def test_each_upload_slot_has_a_second_delivery_waiting_behind_it(
    broker: Broker, make_vhost: Any
) -> None:
    """A thread that finishes an upload takes its next message at once: the broker has
    delivered it already, instead of after the finished one's ack."""
    vhost = make_vhost()
    url = broker.url(vhost)
    settings = UploaderSettings(amqp_url=url, uploader_concurrency=3, shutdown_grace_s=2)
    route = Route(topology.IMAGE_UPLOADS, ImageUploadRequested, _ignore, RetryPolicy((1,), 2))
    publisher = Publisher(url)
    consumer = uploads_consumer(settings, route, publisher)
    stop = threading.Event()
    running = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    running.start()
    try:
        wait_for(consumer.consuming.is_set, what="the consumer to start")

        def held() -> list[int] | None:
            consumers = broker.api("GET", f"consumers/{quote(vhost, '')}").json()
            counts = [c["prefetch_count"] for c in consumers if c["queue"]["name"] == QUEUE]
            return counts or None  # the management database learns of a consumer a bit later

        assert wait_for(held, what="the broker to list the consumer") == [6]
    finally:
        stop.set()
        running.join(10)
        publisher.close()
