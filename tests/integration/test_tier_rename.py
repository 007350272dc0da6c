"""Upgrading to the five-digit tier names, on the real broker in a vhost of its own: a message
waiting in an old-named tier still reaches its work queue, and `topology prune` deletes the old
tier only once it is empty."""

import argparse
from contextlib import closing
from typing import Any
from urllib.parse import quote

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from dev.rabbit_admin import Broker
from dev.waiting import wait_for
from services.uploader import topology_cli
from shared.config.settings import CommonSettings
from shared.contracts import topology
from tests.conftest import VhostMaker

pytestmark = pytest.mark.integration

OLD_TIER = "uploader.image-uploads.retry.2s"  # as versions before the five digits named it


def _declare_old_tier(channel: BlockingChannel) -> None:
    channel.exchange_declare(topology.RETRY_EXCHANGE, "direct", durable=True)
    channel.queue_declare(
        OLD_TIER, durable=True, arguments=topology.retry_queue_arguments(topology.IMAGE_UPLOADS, 2)
    )
    channel.queue_bind(OLD_TIER, topology.RETRY_EXCHANGE, OLD_TIER)


def _queues(broker: Broker, vhost: str) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in broker.api("GET", f"queues/{quote(vhost, '')}").json()}


def test_an_old_tier_drains_into_its_work_queue_then_prune_deletes_it(
    broker: Broker, make_vhost: VhostMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    vhost = make_vhost()
    url = broker.url(vhost)
    settings = CommonSettings(amqp_url=url, retry_delays=(2,))
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        _declare_old_tier(channel)
        channel.confirm_delivery()
        channel.basic_publish(topology.RETRY_EXCHANGE, OLD_TIER, b"waiting", mandatory=True)
    # The new version starts: its tiers, and the old one left as it is.
    assert topology_cli.run(argparse.Namespace(action="apply"), settings) == 0
    assert f"retry tier {OLD_TIER} is no longer in RETRY_DELAYS" in capsys.readouterr().out
    assert topology.retry_queue_name(topology.IMAGE_UPLOADS, 2) in _queues(broker, vhost)
    assert topology_cli.run(argparse.Namespace(action="prune"), settings) == 0
    assert f"{OLD_TIER}: kept, it still holds messages" in capsys.readouterr().out

    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        channel = connection.channel()
        body = wait_for(
            lambda: channel.basic_get(topology.IMAGE_UPLOADS.name, auto_ack=True)[2],
            timeout=30,
            what="the old tier's message back in its work queue",
        )
    assert body == b"waiting"

    assert topology_cli.run(argparse.Namespace(action="prune"), settings) == 0
    assert f"{OLD_TIER}: deleted" in capsys.readouterr().out
    assert OLD_TIER not in _queues(broker, vhost)
    assert topology_cli.run(argparse.Namespace(action="prune"), settings) == 0
    assert "nothing to prune" in capsys.readouterr().out
