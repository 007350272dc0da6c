"""Publishing with confirms on a real broker: counted, persistent, unroutable refused."""

import gc
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress

import pika
import pytest

from dev.rabbit_admin import Broker
from shared.broker.errors import BrokerError, Unroutable
from shared.broker.publisher import Publisher
from shared.contracts.outgoing import Outgoing

from .helpers import close_connections, get_all, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def queue(amqp_url: str) -> Iterator[str]:
    name = f"test.publisher.{uuid.uuid4().hex[:8]}"
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        connection.channel().queue_delete(name)


@pytest.fixture()
def publisher(amqp_url: str) -> Iterator[Publisher]:
    publisher = Publisher(amqp_url)
    yield publisher
    publisher.close()


def test_a_confirmed_batch_is_all_in_the_queue_and_persistent(
    publisher: Publisher, amqp_url: str, queue: str
) -> None:
    publisher.publish_confirmed(
        [Outgoing("", queue, f"m{i}".encode(), headers={"n": i}) for i in range(20)]
    )
    taken = get_all(amqp_url, queue)
    assert sorted(body for _, body in taken) == sorted(f"m{i}".encode() for i in range(20))
    assert {props.delivery_mode for props, _ in taken} == {2}


def test_an_unroutable_message_never_counts_as_sent(publisher: Publisher) -> None:
    with pytest.raises(Unroutable):
        publisher.publish_confirmed([Outgoing("", f"no-such-queue-{uuid.uuid4().hex}", b"lost?")])


def test_one_unroutable_message_fails_its_batch(
    publisher: Publisher, amqp_url: str, queue: str
) -> None:
    batch = [Outgoing("", queue, b"ok"), Outgoing("", "no-such-queue-x", b"lost?")]
    with pytest.raises(Unroutable):
        publisher.publish_confirmed(batch)
    assert [body for _, body in get_all(amqp_url, queue)] == [b"ok"]


@pytest.mark.slow
def test_no_broker_is_an_error_not_a_hang() -> None:
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/%2F")
    try:
        with pytest.raises(BrokerError, match="unavailable"):
            publisher.publish_confirmed([Outgoing("", "q", b"x")], timeout=1.0)
    finally:
        publisher.close()


def test_the_publisher_keeps_working_after_its_connection_is_closed(
    broker: Broker, vhost: str, publisher: Publisher, amqp_url: str, queue: str
) -> None:
    publisher.publish_confirmed([Outgoing("", queue, b"before")])
    assert close_connections(broker, vhost) >= 1

    def publish_after() -> bool:
        try:
            publisher.publish_confirmed([Outgoing("", queue, b"after")], timeout=2.0)
            return True
        except BrokerError:
            return False

    wait_for(publish_after, timeout=20, what="the publisher to reconnect")
    assert b"after" in [body for _, body in get_all(amqp_url, queue)]


def _open_sockets() -> int:
    """The sockets this process holds open now."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(FileNotFoundError):  # the listing's own descriptor, closed since
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def test_reconnects_and_close_leave_no_socket_open(
    broker: Broker, vhost: str, amqp_url: str, queue: str
) -> None:
    """Each connection has an I/O loop with a socket pair of its own (its wake-up line), which
    pika leaves open until the loop is closed: a publisher that did not close it held two more
    sockets after every reconnect, until the garbage collector happened to find them. Held off
    here, so only the publisher's own closing counts."""
    gc.disable()
    try:
        before = _open_sockets()
        publisher = Publisher(amqp_url)
        try:
            for n in range(3):
                wait_for(lambda: _publishes(publisher, queue), timeout=20, what="the publisher")
                assert close_connections(broker, vhost, named="publisher") >= 1, n
            wait_for(lambda: _publishes(publisher, queue), timeout=20, what="the publisher")
        finally:
            publisher.close()
        assert _open_sockets() == before
    finally:
        gc.enable()


def test_close_while_the_connection_is_still_opening_returns_at_once_and_leaves_no_socket(
    silent_node: tuple[str, list[socket.socket]],
) -> None:
    """A stopping API or uploader whose node accepts TCP but never answers must not wait out
    the handshake's timeout, nor leave the half-open socket behind."""
    url, taken = silent_node
    gc.disable()
    try:
        before = _open_sockets()
        publisher = Publisher(url)
        wait_for(lambda: len(taken) == 1, timeout=5, what="the publisher's TCP connection")
        started = time.monotonic()
        publisher.close()
        assert time.monotonic() - started < 1.0
        assert not publisher._thread.is_alive()
        assert _open_sockets() == before + len(taken)  # the node's end alone
    finally:
        gc.enable()


def test_an_error_pika_raises_out_of_its_loop_does_not_end_the_publisher(
    amqp_url: str, queue: str, link_up_fails_once: list[int]
) -> None:
    """Seen in CI as a broker came back: the node reset a connection between pika's TCP
    connect and its link-up, and pika raised ValueError out of its I/O loop. The I/O thread
    died with it, and the API never published again."""
    publisher = Publisher(amqp_url)
    try:
        wait_for(lambda: _publishes(publisher, queue), timeout=20, what="a publish after it")
        assert len(link_up_fails_once) >= 2
    finally:
        publisher.close()


def _publishes(publisher: Publisher, queue: str) -> bool:
    try:
        publisher.publish_confirmed([Outgoing("", queue, b"m")], timeout=2.0)
        return True
    except BrokerError:
        return False


def test_a_message_pika_cannot_encode_fails_alone_and_the_next_confirms_stay_matched(
    publisher: Publisher, amqp_url: str, queue: str
) -> None:
    """pika refuses it before a byte is written, so the broker never numbers it: counting it
    would hand every later ack of the channel to the publish before it."""
    with pytest.raises(BrokerError, match="pika refused it"):
        publisher.publish_confirmed(
            [Outgoing("", queue, b"bad", headers={"x": object()})], timeout=3.0
        )
    publisher.publish_confirmed([Outgoing("", queue, b"good")], timeout=3.0)
    with pytest.raises(Unroutable):
        publisher.publish_confirmed(
            [Outgoing("", f"no-such-queue-{uuid.uuid4().hex}", b"lost?")], timeout=3.0
        )
    publisher.publish_confirmed([Outgoing("", queue, b"after")], timeout=3.0)
    assert sorted(body for _, body in get_all(amqp_url, queue)) == [b"after", b"good"]
