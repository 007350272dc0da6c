"""`python -m services.uploader dead-letters` on a real broker and store: after the album page
retried an album, its old letters are listed as stale, `purge --stale` removes them and nothing
else, and replaying one sends nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from services.uploader import dead_letters_cli
from shared.broker.publisher import Publisher
from shared.config.settings import CommonSettings
from shared.contracts import dead_letters, topology
from shared.delivery.outbox import Outbox
from shared.delivery.replay import Replayer
from shared.store import Store

from .helpers import get_all, purge
from .test_replay import DLQ, UPLOADS, failed_album

pytestmark = pytest.mark.integration


@pytest.fixture()
def cli(sqlite_store: Store, amqp_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Runs `dead-letters ARGS...` as the uploader's command line does; returns its output."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), (1,))
    connection.close()
    purge(amqp_url, UPLOADS.name, DLQ)
    settings = CommonSettings(
        _env_file=None,
        amqp_url=amqp_url,  # type: ignore[call-arg]
        database_url=str(sqlite_store.engine.url),
    )
    parser = argparse.ArgumentParser(prog="python -m services.uploader")
    dead_letters_cli.add_parser(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert dead_letters_cli.run(parser.parse_args(["dead-letters", *argv]), settings) == 0
        return capsys.readouterr().out

    yield run
    purge(amqp_url, UPLOADS.name, DLQ)


@pytest.fixture()
def retried_and_failed(sqlite_store: Store, amqp_url: str) -> tuple[str, str]:
    """Album `retried` (2 images) was retried from its page, album `failed` (1) was not."""
    retried = failed_album(sqlite_store, amqp_url, count=2)
    failed = failed_album(sqlite_store, amqp_url, count=1)
    publisher = Publisher(amqp_url)
    try:
        assert (
            Replayer(sqlite_store, Outbox(sqlite_store, publisher), amqp_url).retry_album(retried)
            == 2
        )
        publisher.publish_confirmed(
            [dead_letters.dead_letter(UPLOADS, b"{bad json", {}, "poison", None, 1)]
        )
    finally:
        publisher.close()
    get_all(amqp_url, UPLOADS.name)  # the retried images' messages reached the uploader
    return retried, failed


def test_list_says_which_letters_are_stale_and_how_to_purge_them(
    cli: Any, retried_and_failed: Any
) -> None:
    retried, failed = retried_and_failed
    listed = json.loads(cli("list", "--json"))
    assert [(letter["album_id"], letter["stale"]) for letter in listed] == [
        (retried, True),
        (retried, True),
        (failed, False),
        (None, False),
    ]
    assert all("queued again" in letter["stale_reason"] for letter in listed[:2])
    assert [letter["stale_reason"] for letter in listed[2:]] == [None, None]

    lines = cli("list").splitlines()
    assert [("stale" in line) for line in lines[:4]] == [True, True, False, False]
    assert "2 of them stale" in lines[-1] and "purge --stale" in lines[-1]


def test_purge_stale_removes_only_the_stale_letters(
    cli: Any, retried_and_failed: Any, sqlite_store: Store, amqp_url: str
) -> None:
    retried, failed = retried_and_failed
    assert cli("purge", "--stale").strip() == "purged 2 dead letters"
    # The audit says what the command did: 2 letters (their index rows had left "waiting"
    # with the album's retry, and it said 0).
    (entry, *_) = sqlite_store.audit_log()
    assert (entry.action, entry.count) == ("purge", 2), entry
    listed = json.loads(cli("list", "--json"))
    assert [(letter["album_id"], letter["stale"]) for letter in listed] == [
        (failed, False),
        (None, False),
    ]
    assert cli("purge", "--stale").strip() == "purged 0 dead letters"
    assert get_all(amqp_url, UPLOADS.name) == []  # a purge sends nothing
    album = sqlite_store.album(retried)
    assert album is not None and {image.state for image in album.images} == {"queued"}


def test_replaying_stale_letters_says_they_sent_nothing(
    cli: Any, retried_and_failed: Any, amqp_url: str
) -> None:
    retried, failed = retried_and_failed
    out = cli("replay", "--album", retried)
    assert out.strip() == "replayed 2 dead letters (2 stale: removed, nothing sent)"
    assert get_all(amqp_url, UPLOADS.name) == []
    assert [letter["album_id"] for letter in json.loads(cli("list", "--json"))] == [failed, None]


def test_what_the_cli_takes_leaves_the_desk(cli: Any, sqlite_store: Store, amqp_url: str) -> None:
    """A letter the command line purged or replayed is marked in the desk's index (audited as
    the command line's), so the desk does not offer it again; --id picks one by message id."""
    album_id = failed_album(sqlite_store, amqp_url, count=2)
    first, second = (x.message_id for x in sqlite_store.waiting_letters(album_id=album_id))
    listed = json.loads(cli("list", "--json"))
    assert [letter["id"] for letter in listed] == [first, second]
    assert cli("purge", "--id", second) == "purged 1 dead letters\n"
    cli("replay", "--album", album_id)
    states = sqlite_store.letter_states([first, second])
    assert states == {first: "replayed", second: "purged"}
    assert sqlite_store.letter_groups() == []
    assert [(a.operator, a.action, a.count) for a in sqlite_store.audit_log()] == [
        ("command line", "replay", 1),
        ("command line", "purge", 1),
    ]
