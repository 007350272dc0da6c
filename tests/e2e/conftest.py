"""The whole system as processes (dev/harness.py): the stand-ins (S3, Graph, SMTP) and the
three services, on ports of the session's own, a vhost and a SQLite file of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dev.harness import ROOT, System

__all__ = ["ROOT", "System"]
PAGE_TOKEN = "e2e-page-token"

#: The e2e settings: short retries, and the uploader's concurrency as the album window (as the
#: README advises: albums take even turns).
SETTINGS = {
    "RETRY_DELAYS": "1,2",
    "MAX_ATTEMPTS": "6",
    "UPLOADER_CONCURRENCY": "4",
    "ALBUM_WINDOW": "4",
    "SHUTDOWN_GRACE_S": "5",
    "GRAPH_TIMEOUT_S": "5",
}


def e2e_system(workdir: Path, amqp_url: str) -> System:
    return System(
        workdir,
        amqp_url,
        f"sqlite:///{workdir}/albums.db",
        SETTINGS,
        bucket="albums-e2e",
        page_token=PAGE_TOKEN,
    )


@pytest.fixture(scope="session")
def e2e_amqp_url(broker: Any, make_vhost: Any) -> str:
    """The system's own vhost: its consumers must not take the integration tests' messages."""
    return str(broker.url(make_vhost(for_session=True)))


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, e2e_amqp_url: str) -> Iterator[System]:
    system = e2e_system(tmp_path_factory.mktemp("e2e"), e2e_amqp_url)
    try:
        system.start_all()
        yield system
    finally:
        system.stop_all(grace=15)
        for name in system.processes:
            if "Traceback" in system.logs(name):
                print(f"--- {name}.log ---\n{system.logs(name)[-4000:]}")


@pytest.fixture(autouse=True)
def no_faults(system: System) -> Iterator[None]:
    system.set_faults()
    yield
    system.set_faults()


@pytest.fixture()
def album_creation_allowed(system: System) -> Iterator[None]:
    """The simulated Page accepts `POST /{page-id}/albums` for this test (today's Facebook, and
    the simulator by default, refuse it): for tests of the album path itself."""

    def refuse(value: bool) -> None:
        requests.put(
            f"{system.graph_url}/_sim/page", json={"refuse_album_creation": value}, timeout=5
        ).raise_for_status()

    refuse(False)
    yield
    refuse(True)
