"""Connections to RabbitMQ: parameters, message properties, the topology, queue depths."""

from __future__ import annotations

import logging
import random

import pika
import pika.exceptions

from shared.broker.amqp_urls import split_urls
from shared.broker.declarer import TopologyDeclarer
from shared.broker.errors import BrokerError
from shared.broker.policies import try_apply_policies
from shared.config.settings import CommonSettings
from shared.contracts.outgoing import Outgoing

log = logging.getLogger(__name__)

#: Heartbeats every 30 s: a dead peer is noticed within a minute; uploads run off the I/O thread.
HEARTBEAT_S = 30
#: A connection blocked by a broker alarm fails publishes after this long instead of hanging.
BLOCKED_TIMEOUT_S = 30


def properties(message: Outgoing) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type=message.content_type,
        message_id=message.message_id,
        headers=dict(message.headers),
    )


def parameters(
    url: str, start: int | None = None, name: str | None = None
) -> list[pika.URLParameters]:
    """One set of parameters per node of `url` (AMQP_URL: one URL or several, comma-separated),
    starting at node `start` and going round; a random start by default, so that processes
    spread over a cluster's nodes. A connection tries each in turn, once. `name` is the
    connection's name in the management UI (which consumer or publisher it is)."""
    nodes = [_node_parameters(node_url) for node_url in split_urls(url)]
    if name is not None:
        for node in nodes:
            node.client_properties = {"connection_name": name}
    first = random.randrange(len(nodes)) if start is None else start % len(nodes)
    return nodes[first:] + nodes[:first]


def _node_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = HEARTBEAT_S
    params.blocked_connection_timeout = BLOCKED_TIMEOUT_S
    params.connection_attempts = 1
    params.socket_timeout = 5
    # A node that takes the TCP connection but does not answer (stopped, overloaded) is given
    # up after this long, and the next node is tried.
    params.stack_timeout = 10
    return params


def after(nodes: list[pika.URLParameters], lost: pika.URLParameters) -> list[pika.URLParameters]:
    """`nodes` in the order to try after the connection to `lost` died: the next node first,
    `lost` last (it may be down, or cut off from the others)."""
    if lost not in nodes:
        return nodes
    index = nodes.index(lost) + 1
    return nodes[index:] + nodes[:index]


def label(params: pika.ConnectionParameters) -> str:
    """The node as `host:port`, for logs."""
    return f"{params.host}:{params.port}"


def node_of(connection: pika.BlockingConnection) -> pika.ConnectionParameters:
    """The node a blocking connection opened on (given several, pika tried them in turn)."""
    params: pika.ConnectionParameters = connection._impl.params  # pika has no public way
    return params


def ready_count(url: str, queue: str) -> int:
    """How many messages `queue` holds ready for delivery now (a passive declare)."""
    connection = pika.BlockingConnection(parameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def declare_topology(settings: CommonSettings, policies: bool = True) -> None:
    """Apply the broker policies unless told not to (logged, not raised, when the management
    API cannot be used), then declare every exchange and queue over a short-lived connection
    (idempotent); raises BrokerError when the broker is not reachable or refuses the topology."""
    if policies:  # first, so a queue declared now is born under them
        try_apply_policies(settings)
    try:
        connection = pika.BlockingConnection(parameters(settings.amqp_url))
        try:
            TopologyDeclarer.from_settings(settings)(connection.channel())
        finally:
            if connection.is_open:
                connection.close()
    except pika.exceptions.AMQPError as exc:
        raise BrokerError(f"could not declare the topology: {exc!r}") from exc
    log.info("topology declared on %s", label(node_of(connection)))


def delete_if_empty(url: str, queue: str, exchange: str, routing_key: str) -> bool:
    """Delete `queue` if it holds no message; False (and left as it was) if it holds some.

    Quorum queues refuse an `if_empty` delete (540 NOT_IMPLEMENTED on 3.10), so the queue is
    first unbound (a late publish to it is unroutable, which the publisher sees, rather than
    lost), then counted, then deleted or bound again."""
    connection = pika.BlockingConnection(parameters(url))
    try:
        channel = connection.channel()
        channel.queue_unbind(queue, exchange, routing_key)
        if channel.queue_declare(queue, passive=True).method.message_count:
            channel.queue_bind(queue, exchange, routing_key)
            return False
        channel.queue_delete(queue)
        return True
    finally:
        if connection.is_open:
            connection.close()
