"""AMQP_URL as a list of broker nodes: parsing, the error for a bad entry, the order tried."""

import pytest
from pydantic import ValidationError

from shared.broker.amqp_urls import BadAmqpUrl, node_label, split_urls
from shared.broker.connection import after, parameters
from shared.config.settings import CommonSettings


def test_one_url_is_one_node() -> None:
    assert split_urls("amqp://guest:guest@127.0.0.1:5672/%2F") == [
        "amqp://guest:guest@127.0.0.1:5672/%2F"
    ]


def test_several_full_urls_each_keep_their_credentials_and_vhost() -> None:
    value = "amqp://a:pa@h1:5681/one, amqps://b:pb@h2:5682/two?heartbeat=5"
    assert split_urls(value) == ["amqp://a:pa@h1:5681/one", "amqps://b:pb@h2:5682/two?heartbeat=5"]


def test_bare_hosts_share_the_first_urls_credentials_vhost_and_query() -> None:
    value = "amqp://user:s%2Ccret@h1:5681/albums?heartbeat=5,h2:5682,h3,[::1]:5683"
    assert split_urls(value) == [
        "amqp://user:s%2Ccret@h1:5681/albums?heartbeat=5",
        "amqp://user:s%2Ccret@h2:5682/albums?heartbeat=5",
        "amqp://user:s%2Ccret@h3/albums?heartbeat=5",
        "amqp://user:s%2Ccret@[::1]:5683/albums?heartbeat=5",
    ]


def test_blank_entries_and_spaces_are_ignored() -> None:
    assert split_urls(" amqp://h1/%2F ,, h2 ,") == ["amqp://h1/%2F", "amqp://h2/%2F"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("h1:5672", "entry 1 .*amqp://"),
        ("http://h1/", "entry 1 .*amqp://"),
        ("amqp://h1/%2F,amqp://h2:notaport/%2F", "entry 2 .*port"),
        ("amqp://h1/%2F,amqp:///%2F", "entry 2 .*no host"),
        ("amqp://h1/%2F,other@h2", "bare entry is only host"),
        ("amqp://h1/%2F,h2/vhost", "bare entry is only host"),
    ],
)
def test_a_bad_entry_is_named_with_its_reason(value: str, reason: str) -> None:
    with pytest.raises(BadAmqpUrl, match=reason):
        split_urls(value)


def test_an_error_never_shows_the_password() -> None:
    with pytest.raises(BadAmqpUrl) as caught:
        split_urls("amqp://u:topsecret@h1/%2F,amqp://u:topsecret@h2:x/%2F")
    assert "topsecret" not in str(caught.value)
    assert "u:***@h2:x" in str(caught.value)


def test_settings_refuse_an_unreadable_node_list_at_start() -> None:
    with pytest.raises(ValidationError, match="entry 2"):
        CommonSettings(amqp_url="amqp://h1/%2F,ftp://h2/")
    assert CommonSettings(amqp_url="amqp://h1/%2F,h2").amqp_url == "amqp://h1/%2F,h2"


def test_node_label_is_host_and_port_without_credentials() -> None:
    assert node_label("amqp://u:p@h1/%2F") == "h1:5672"
    assert node_label("amqps://u:p@h1:5999/%2F") == "h1:5999"


def test_parameters_go_round_from_the_start_node_with_shared_settings() -> None:
    nodes = parameters("amqp://u:p@h1:1/v,h2:2,h3:3", start=1)
    assert [(p.host, p.port) for p in nodes] == [("h2", 2), ("h3", 3), ("h1", 1)]
    assert {(p.virtual_host, p.credentials.username, p.connection_attempts) for p in nodes} == {
        ("v", "u", 1)
    }


def test_parameters_start_at_a_random_node_and_keep_the_ring_order() -> None:
    ring = ["h1", "h2", "h3"]
    starts = set()
    for _ in range(200):
        hosts = [p.host for p in parameters("amqp://h1/%2F,h2,h3")]
        first = ring.index(hosts[0])
        assert hosts == ring[first:] + ring[:first]
        starts.add(hosts[0])
    assert starts == set(ring)  # processes spread over every node


def test_after_a_lost_node_the_next_one_is_tried_first_and_the_lost_one_last() -> None:
    nodes = parameters("amqp://h1/%2F,h2,h3", start=0)
    assert [p.host for p in after(nodes, nodes[0])] == ["h2", "h3", "h1"]
    assert [p.host for p in after(nodes, nodes[2])] == ["h1", "h2", "h3"]


def test_the_vhost_and_management_api_come_from_the_first_node() -> None:
    settings = CommonSettings(amqp_url="amqp://u:p@h1:5681/albums,amqp://u:p@h2:5682/albums")
    assert settings.amqp_vhost == "albums"
    assert settings.rabbitmq_management_url == "http://h1:15672"
    assert settings.rabbitmq_management_user == "u"
    assert CommonSettings(amqp_url="amqp://u:p@h1/%2F,h2,h3").amqp_vhost == "/"
