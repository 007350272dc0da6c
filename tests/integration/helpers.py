"""Small waits and broker reads shared by the integration and e2e tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pika
import requests

from dev.waiting import wait_for as wait_for  # re-exported: the tests take it from here
from shared.broker.publisher import Publisher
from shared.contracts import topology
from shared.contracts.messages import AlbumSettled, ImageUploadRequested, decode

T = TypeVar("T")

#: The Graph simulator's page and token in the integration tests.
PAGE_ID = "1000000000000001"
TOKEN = "test-page-token"
VERSION = "v24.0"


def get_all(url: str, queue: str) -> list[tuple[Any, bytes]]:
    """Take every message now in `queue` (acking them): [(properties, body)]."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        taken: list[tuple[Any, bytes]] = []
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((props, body))
    finally:
        connection.close()


def purge(url: str, *queues: str) -> None:
    """Empty `queues` of their ready messages: one round trip each, where taking them one by one
    (get_all) cost one per message (a teardown of 5,000 dead letters took 16 s that way)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_purge(queue)
    finally:
        connection.close()


def message_count(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        count: int = connection.channel().queue_declare(queue, passive=True).method.message_count
        return count
    finally:
        connection.close()


def set_faults(sim: str, faults: dict[str, Any]) -> None:
    requests.put(f"{sim}/_sim/faults", json=faults, timeout=5).raise_for_status()


def sim_photos(sim: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{sim}/_sim/photos", timeout=5).json()["photos"])


def close_connections(broker: Any, vhost: str, named: str | None = None) -> int:
    """Close client connections to `vhost` from the broker's side (as an operator or a broker
    restart would): every one, or those whose name starts with `named` (the runtime names its
    connections: "consumer <queue>", "publisher"). Waits until the management API lists at
    least one such (its listing lags behind new connections, the more so on a busy machine)."""

    def listed() -> list[dict[str, Any]]:
        return [
            c
            for c in broker.api("GET", "connections").json()
            if c.get("vhost") == vhost
            and (named is None or (c.get("user_provided_name") or "").startswith(named))
        ]

    connections = wait_for(listed, timeout=20, every=0.5, what=f"connections to {vhost}")
    for connection in connections:
        broker.api("DELETE", f"connections/{connection['name']}")
    return len(connections)


def upload_of(body: bytes) -> ImageUploadRequested:
    """The upload request a work-queue body holds (failing the test if it holds another)."""
    message = decode(body)
    assert isinstance(message, ImageUploadRequested), message
    return message


def settled_of(body: bytes) -> AlbumSettled:
    """The album's settled event a body holds (failing the test if it holds another)."""
    message = decode(body)
    assert isinstance(message, AlbumSettled), message
    return message


@contextlib.contextmanager
def uploader_publisher(
    amqp_url: str, retry_delays: Sequence[int], drain: Sequence[str]
) -> Iterator[Publisher]:
    """A publisher on the topology declared with these retry tiers, as the uploader's; the
    `drain` queues emptied afterwards (what the test's handler published)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), retry_delays)
    connection.close()
    publisher = Publisher(amqp_url)
    try:
        yield publisher
    finally:
        publisher.close()
        for queue in drain:
            get_all(amqp_url, queue)
