"""Given several broker nodes of which the first is dead, the publisher and the consumer connect
to the live one (AMQP_URL with several nodes)."""

import logging
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing

import pika
import pytest

from dev.ports import free_port
from dev.rabbit_admin import Broker
from shared.broker.consumer import Consumer, Route
from shared.broker.publisher import Publisher
from shared.contracts import topology
from shared.contracts.messages import ImageUploadRequested, encode
from shared.contracts.outgoing import Outgoing
from shared.policies.retry_policy import RetryPolicy

from .helpers import close_connections, get_all, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def dead_first(monkeypatch: pytest.MonkeyPatch, amqp_url: str) -> tuple[str, str]:
    """`dead node, live node` as AMQP_URL, and every connection starting at the dead one."""
    # parameters() starts at a random node: here always at the first, the dead one.
    monkeypatch.setattr(random, "randrange", lambda _n: 0)
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F,{amqp_url}", amqp_url


@pytest.fixture()
def queue(amqp_url: str) -> Iterator[str]:
    name = f"test.failover.{uuid.uuid4().hex[:8]}"
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        connection.channel().queue_delete(name)


def test_the_publisher_skips_a_dead_node(
    dead_first: tuple[str, str], queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    nodes, live = dead_first
    caplog.set_level(logging.INFO, logger="shared.broker.publisher")
    publisher = Publisher(nodes)
    try:
        publisher.publish_confirmed(
            [Outgoing("", queue, b"through the live node")], connect_wait=10
        )
    finally:
        publisher.close()
    assert [body for _, body in get_all(live, queue)] == [b"through the live node"]
    live_port = pika.URLParameters(live).port
    assert f"publisher connected to 127.0.0.1:{live_port}" in caplog.text


def test_the_consumer_skips_a_dead_node(
    dead_first: tuple[str, str], queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    nodes, live = dead_first
    caplog.set_level(logging.INFO, logger="shared.broker.consumer")
    taken: list[int] = []

    def handler(message: ImageUploadRequested, _attempt: int) -> None:
        taken.append(message.image_id)

    route = Route(
        topology.WorkQueue(queue, queue),
        ImageUploadRequested,
        handler,
        RetryPolicy((1,), max_attempts=1),
    )
    consumer = Consumer(nodes, route, concurrency=1, grace_s=2)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert consumer.consuming.wait(15), "the consumer did not start consuming"
        with closing(pika.BlockingConnection(pika.URLParameters(live))) as connection:
            connection.channel().basic_publish(
                "", queue, encode(ImageUploadRequested(album_id="a", image_id=7, key="k7"))
            )
        wait_for(lambda: taken == [7], timeout=10, what="the delivery")
    finally:
        stop.set()
        thread.join(10)
    live_port = pika.URLParameters(live).port
    assert f"consuming with concurrency 1 on 127.0.0.1:{live_port}" in caplog.text
    assert consumer.connects == 1  # at once on the live node, no reconnect round


@pytest.mark.slow
def test_after_losing_its_node_the_consumer_and_its_publisher_try_the_next_one_first(
    monkeypatch: pytest.MonkeyPatch,
    broker: Broker,
    vhost: str,
    amqp_url: str,
    queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two names of the one broker stand for two nodes: once the broker closes the connections
    on `127.0.0.1`, the next ones open on `localhost` (the lost node is tried last)."""
    monkeypatch.setattr(random, "randrange", lambda _n: 0)
    port = pika.URLParameters(amqp_url).port
    caplog.set_level(logging.INFO, logger="shared.broker")
    route = Route(
        topology.WorkQueue(queue, queue),
        ImageUploadRequested,
        lambda _message, _attempt: None,
        RetryPolicy((1,), max_attempts=1),
    )
    consumer = Consumer(f"{amqp_url},localhost:{port}", route, concurrency=1, grace_s=2)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert consumer.consuming.wait(15), "the consumer did not start consuming"
        wait_for(
            lambda: "publisher connected to" in caplog.text,
            timeout=10,
            what="the consumer's publisher",
        )
        close_connections(broker, vhost, named="consumer ")
        close_connections(broker, vhost, named="publisher")
        wait_for(lambda: consumer.connects == 2, timeout=20, what="the consumer to reconnect")
        wait_for(
            lambda: caplog.text.count("publisher connected to") == 2,
            timeout=20,
            what="the publisher to reconnect",
        )
    finally:
        stop.set()
        thread.join(10)
    consumed_on = [
        line.rsplit(" on ", 1)[1]
        for line in caplog.text.splitlines()
        if "consuming with concurrency" in line
    ]
    published_on = [
        line.rsplit(" to ", 1)[1]
        for line in caplog.text.splitlines()
        if "publisher connected to" in line
    ]
    assert consumed_on == [f"127.0.0.1:{port}", f"localhost:{port}"]
    assert published_on == [f"127.0.0.1:{port}", f"localhost:{port}"]
