"""python -m services.uploader topology apply|prune, on a vhost of its own."""

import argparse
from contextlib import closing
from urllib.parse import quote

import pika
import pytest

from dev.ports import free_port
from dev.rabbit_admin import Broker
from services.uploader import topology_cli
from shared.config.settings import CommonSettings
from shared.contracts import topology
from tests.conftest import VhostMaker

pytestmark = pytest.mark.integration


@pytest.fixture()
def fresh(broker: Broker, make_vhost: VhostMaker) -> tuple[str, str]:
    name = make_vhost()
    return name, broker.url(name)


def run(action: str, settings: CommonSettings) -> int:
    return topology_cli.run(argparse.Namespace(action=action), settings)


def test_apply_puts_the_policies_and_declares_the_queues(
    broker: Broker, fresh: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    vhost, url = fresh
    assert run("apply", CommonSettings(amqp_url=url, retry_delays=(1,), delivery_limit=9)) == 0
    out = capsys.readouterr().out
    assert "policy albums.work-queues applied: {'delivery-limit': 9}" in out
    policies = {p["name"] for p in broker.api("GET", f"policies/{quote(vhost, '')}").json()}
    assert policies == {"albums.work-queues", "albums.dead-letters"}
    queues = {q["name"] for q in broker.api("GET", f"queues/{quote(vhost, '')}").json()}
    assert {spec.name for spec in topology.queue_specs((1,))} <= queues
    assert run("apply", CommonSettings(amqp_url=url, retry_delays=(1,), delivery_limit=9)) == 0
    assert "policy albums.work-queues already in place" in capsys.readouterr().out


def test_apply_fails_clearly_without_the_management_api(
    fresh: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fresh
    away = CommonSettings(amqp_url=url, rabbitmq_management_url=f"http://127.0.0.1:{free_port()}")
    assert run("apply", away) == 1
    assert "management API does not answer" in capsys.readouterr().err


def test_prune_deletes_empty_tiers_no_longer_configured_and_keeps_full_ones(
    broker: Broker, fresh: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    vhost, url = fresh
    assert run("apply", CommonSettings(amqp_url=url, retry_delays=(10, 20))) == 0
    full = topology.retry_queue_name(topology.IMAGE_UPLOADS, 20)
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as connection:
        connection.channel().basic_publish(topology.RETRY_EXCHANGE, full, b"waiting")
    capsys.readouterr()
    assert run("prune", CommonSettings(amqp_url=url, retry_delays=(10,))) == 0
    out = capsys.readouterr().out
    assert f"{full}: kept, it still holds messages" in out
    assert f"{topology.retry_queue_name(topology.IMAGE_UPLOADS, 25)}: deleted" in out
    queues = {q["name"] for q in broker.api("GET", f"queues/{quote(vhost, '')}").json()}
    assert full in queues and topology.retry_queue_name(topology.IMAGE_UPLOADS, 25) not in queues
    assert topology.retry_queue_name(topology.IMAGE_UPLOADS, 10) in queues
