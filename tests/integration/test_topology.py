"""The topology as the broker holds it, read back through the management API."""

from urllib.parse import quote

import pika
import pytest

from dev.rabbit_admin import Broker
from shared.broker.connection import declare_topology
from shared.config.settings import CommonSettings
from shared.contracts import topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def declared(amqp_url: str) -> CommonSettings:
    settings = CommonSettings(amqp_url=amqp_url, retry_delays=(1, 3), delivery_limit=20)
    declare_topology(settings)
    declare_topology(settings)  # a second service starting must change nothing
    return settings


def test_every_queue_is_declared_with_its_arguments(
    broker: Broker, vhost: str, declared: CommonSettings
) -> None:
    queues = {q["name"]: q for q in broker.api("GET", f"queues/{quote(vhost, '')}").json()}
    for spec in topology.queue_specs(declared.retry_delays):
        assert spec.name in queues, spec.name
        assert queues[spec.name]["durable"] is True
        assert queues[spec.name]["arguments"] == spec.arguments


def test_every_queue_is_bound_as_specified(
    broker: Broker, vhost: str, declared: CommonSettings
) -> None:
    bindings = {
        (b["source"], b["destination"], b["routing_key"])
        for b in broker.api("GET", f"bindings/{quote(vhost, '')}").json()
    }
    for spec in topology.queue_specs(declared.retry_delays):
        assert (spec.exchange, spec.name, spec.routing_key) in bindings


def test_exchanges_are_durable_direct_exchanges(
    broker: Broker, vhost: str, declared: CommonSettings
) -> None:
    exchanges = {e["name"]: e for e in broker.api("GET", f"exchanges/{quote(vhost, '')}").json()}
    for name in (topology.WORK_EXCHANGE, topology.RETRY_EXCHANGE, topology.DEAD_EXCHANGE):
        assert exchanges[name]["type"] == "direct" and exchanges[name]["durable"] is True


def test_a_queue_redeclared_with_other_fixed_arguments_is_refused(
    amqp_url: str, declared: CommonSettings
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED"):
            connection.channel().queue_declare(
                topology.IMAGE_UPLOADS.name,
                durable=True,
                arguments={**topology.work_queue_arguments(), "x-queue-type": "classic"},
            )
    finally:
        connection.close()
