"""What the services know of RabbitMQ: a message to send, connection parameters, errors.

pika is imported only here, in `shared/publisher.py` and in `shared/consumer.py`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pika

from shared import topology
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

#: Heartbeats every 30 s: a dead peer is noticed within a minute; uploads run off the I/O thread.
HEARTBEAT_S = 30
#: A connection blocked by a broker alarm fails publishes after this long instead of hanging.
BLOCKED_TIMEOUT_S = 30


class BrokerError(Exception):
    """A publish or a connection that did not go through; the caller may try again later."""


class Unroutable(BrokerError):
    """The broker had no queue for a message: it was not stored anywhere."""


@dataclass(frozen=True)
class Outgoing:
    """One persistent message to publish with confirms and mandatory routing."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    content_type: str = "application/json"

    def properties(self) -> pika.BasicProperties:
        return pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type=self.content_type,
            message_id=self.message_id,
            headers=dict(self.headers),
        )


def parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = HEARTBEAT_S
    params.blocked_connection_timeout = BLOCKED_TIMEOUT_S
    params.connection_attempts = 1
    params.socket_timeout = 5
    return params


def ready_count(url: str, queue: str) -> int:
    """How many messages `queue` holds ready for delivery now (a passive declare)."""
    connection = pika.BlockingConnection(parameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def declare_topology(settings: CommonSettings) -> None:
    """Declare every exchange and queue over a short-lived connection (idempotent)."""
    connection = pika.BlockingConnection(parameters(settings.amqp_url))
    try:
        topology.declare(connection.channel(), settings.retry_delays, settings.delivery_limit)
    finally:
        connection.close()
    log.info("topology declared on %s", parameters(settings.amqp_url).host)
