"""Issue 9, case 10: waiting for a confirm must not hold up the consumer's I/O thread.

A retry copy or dead letter used to be published on a confirm channel of the consumer's own
connection, from pika's I/O thread, with no time limit: while the broker held the confirm
back, no other delivery was acked or even delivered. Here the broker holds it back the way a
memory alarm does (it stops reading from every connection that publishes), on a node of the
test's own. Now the copy goes out from the worker through the process's publisher with a
timeout; the consumer's connection, which only acks, keeps flowing, and the message whose
copy was not confirmed goes back to its queue.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pika
import pytest

from dev.rabbit_node import Node
from shared.broker.consumer import Consumer, Route
from shared.contracts import outcomes, topology
from shared.contracts.messages import ImageUploadRequested, encode
from shared.policies.retry_policy import RetryPolicy

from .helpers import wait_for

pytestmark = pytest.mark.integration

QUEUE = topology.IMAGE_UPLOADS
DELAYS = (1, 2)
OTHERS = range(2, 12)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A broker of the test's own: an alarm on the shared one would stop every test."""
    if not list(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server")):
        pytest.skip("RabbitMQ is not installed here: the test starts a node of its own")
    node = Node(tmp_path_factory.mktemp("blocked") / "node")
    node.start()
    yield node
    node.kill()
    node.remove_data()


def memory_alarm(node: Node, on: bool) -> None:
    """Raise (or clear) the node's memory alarm: it blocks every connection that publishes."""
    subprocess.run(
        [
            str(node.sbin / "rabbitmqctl"),
            "-n",
            node.name,
            "set_vm_memory_high_watermark",
            "0.00001" if on else "0.4",
        ],
        env=node.env(),
        check=True,
        capture_output=True,
        timeout=60,
    )


class OneRefused:
    """Image 1 fails for a while (it needs a retry copy); the others go through."""

    def __init__(self) -> None:
        self.done: set[int] = set()
        self.lock = threading.Lock()
        self.refuse = True

    def __call__(self, message: ImageUploadRequested, attempt: int) -> None:
        if message.image_id == 1 and self.refuse:
            raise outcomes.Transient("scripted transient")
        with self.lock:
            self.done.add(message.image_id)

    def images(self) -> set[int]:
        with self.lock:
            return set(self.done)


@pytest.mark.slow
def test_a_confirm_held_back_does_not_stop_other_acks(node: Node) -> None:
    url = node.url("/")
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        topology.declare(channel, DELAYS)
        channel.confirm_delivery()
        for image_id in (1, *OTHERS):  # image 1 first: its copy is the first to be held back
            channel.basic_publish(
                topology.WORK_EXCHANGE,
                QUEUE.routing_key,
                encode(ImageUploadRequested(album_id="a", image_id=image_id, key=f"k{image_id}")),
                pika.BasicProperties(delivery_mode=2),
            )
    handler = OneRefused()
    route = Route(QUEUE, ImageUploadRequested, handler, RetryPolicy(DELAYS, max_attempts=5))
    consumer = Consumer(
        url,
        route,
        2,
        prefetch=2,
        publish_timeout_s=2,
        grace_s=5,
        on_connect=functools.partial(topology.declare, retry_delays=DELAYS),
    )
    stop = threading.Event()
    memory_alarm(node, on=True)
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    try:
        thread.start()
        # The other ten are delivered and acked while image 1's retry copy waits for a confirm.
        wait_for(
            lambda: set(OTHERS) <= handler.images(),
            timeout=15,
            what="every other message while a confirm is held back",
        )
        memory_alarm(node, on=False)
        handler.refuse = False
        wait_for(lambda: 1 in handler.images(), timeout=30, what="image 1 once it may go through")
        wait_for(lambda: queue_depth(url) == 0, timeout=10, what="every queue to drain")
        assert dead_letters(url) == 0
    finally:
        memory_alarm(node, on=False)
        stop.set()
        thread.join(15)


def queue_depth(url: str) -> int:
    """Messages ready in the work queue and its retry tiers."""
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        names = [
            QUEUE.name,
            *(topology.retry_queue_name(QUEUE, tier) for tier in topology.retry_tiers(DELAYS)),
        ]
        return sum(channel.queue_declare(name, passive=True).method.message_count for name in names)


def dead_letters(url: str) -> int:
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        return int(
            connection.channel()
            .queue_declare(topology.dead_letter_queue_name(QUEUE), passive=True)
            .method.message_count
        )
