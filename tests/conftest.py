"""Fixtures for the real parts: a broker vhost of our own per test session, and the store.

The broker is the one at AMQP_URL (default the local one); where none answers and Docker runs,
testcontainers starts one. Each session gets its own vhost, deleted afterwards, so test runs
never see each other's queues on a shared broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

# Imported where used: `make test-unit`'s pytest-xdist controller loads this file and runs no
# test, and SQLAlchemy, the store and requests cost it 0.4 s before any worker starts.
if TYPE_CHECKING:
    from dev.rabbit_admin import Broker
    from shared.store import Store

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    from dev.rabbit_admin import Broker

    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    parts = urlsplit(amqp_url)
    if _answers(parts.hostname or "127.0.0.1", parts.port or 5672):
        management = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{parts.hostname}:15672")
        found = Broker(amqp_url, management)
        _check_file_descriptors(found)
        yield found
        return
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode != 0
    ):
        message = f"no RabbitMQ answers at {parts.hostname}:{parts.port} and no Docker runs"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management").with_exposed_ports(5672, 15672) as c:
        host = c.get_container_host_ip()
        url = f"amqp://guest:guest@{host}:{c.get_exposed_port(5672)}/"
        yield Broker(url, f"http://{host}:{c.get_exposed_port(15672)}")


#: File descriptors a test session needs on the broker: each vhost holds its message stores'
#: files, each queue its own.
_FDS_NEEDED = 400


def _check_file_descriptors(broker: Broker) -> None:
    """Fail at once, saying why, when the local broker is short of file handles. Out of them,
    RabbitMQ stops accepting connections without a word in its log, and every test times out.
    The usual cause is the vhosts of test runs that were killed before their clean-up. (Its
    file-handle count, queues' reserved handles included, is in `rabbitmqctl status`; the
    management API's `fd_used` counts only open files.)"""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or broker.host not in ("127.0.0.1", "localhost"):
        return
    done = subprocess.run(
        [ctl, "status", "--formatter", "json"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return
    handles = json.loads(done.stdout).get("file_descriptors", {})
    left = int(handles.get("total_limit", 0)) - int(handles.get("total_used", 0))
    if handles.get("total_limit") and left < _FDS_NEEDED:
        leftovers = [
            v["name"]
            for v in broker.api("GET", "vhosts").json()
            if v["name"].startswith("albums-test-")
        ]
        pytest.fail(
            f"RabbitMQ has {left} file handles left (of {handles['total_limit']}); a "
            f"test session needs about {_FDS_NEEDED}. Vhosts left by earlier test "
            f"runs: {leftovers or 'none'}. Delete them once no test run is going "
            "(rabbitmqctl delete_vhost NAME), or raise the broker's open-file limit."
        )


class VhostMaker:
    """Makes vhosts with full permissions. One made while a test runs is deleted when that test
    ends (`_vhosts_of_the_test`); one made `for_session` when the session ends. A vhost holds
    about 110 of the broker's ~930 file handles once the topology is declared, so the tests'
    vhosts must not pile up until the end of a long session."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.made: list[str] = []
        self.kept: list[str] = []

    def __call__(self, for_session: bool = False) -> str:
        name = self._broker.create_vhost("albums-test")
        (self.kept if for_session else self.made).append(name)
        return name

    def delete_since(self, mark: int) -> None:
        for name in self.made[mark:]:
            self._broker.delete_vhost(name)
        del self.made[mark:]


@pytest.fixture(scope="session")
def make_vhost(broker: Broker) -> Iterator[VhostMaker]:
    maker = VhostMaker(broker)
    yield maker
    maker.delete_since(0)
    for name in maker.kept:
        broker.delete_vhost(name)


@pytest.fixture(autouse=True)
def _vhosts_of_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the vhosts a test made once it ends (only for tests that use the broker)."""
    if "make_vhost" not in request.fixturenames:
        yield
        return
    maker: VhostMaker = request.getfixturevalue("make_vhost")
    mark = len(maker.made)
    yield
    maker.delete_since(mark)


@pytest.fixture(scope="session")
def vhost(make_vhost: VhostMaker) -> str:
    """The integration tests' vhost (the e2e system runs in another one)."""
    return make_vhost(for_session=True)


@pytest.fixture(scope="session")
def amqp_url(broker: Broker, vhost: str) -> str:
    return broker.url(vhost)


@pytest.fixture()
def sqlite_store(tmp_path: object) -> Store:
    from shared.store import Store

    store = Store(f"sqlite:///{tmp_path}/albums.db")
    store.create_schema()
    return store


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped at the end (skips the test where none answers)."""
    admin_url = os.environ.get("POSTGRES_ADMIN_URL", DEFAULT_PG_URL)
    parts = urlsplit(admin_url)
    if not _answers(parts.hostname or "127.0.0.1", parts.port or 5432):
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL answers at {parts.hostname}:{parts.port}")
        pytest.skip("no PostgreSQL")
    from dev.scratch_database import scratch_database

    with scratch_database(admin_url, "albums_test_") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    """The store on each backend it supports."""
    from shared.store import Store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/albums.db"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    store.create_schema()
    yield store
    store.dispose()
