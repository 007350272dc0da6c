"""The system under test as processes (dev/harness.py): stand-ins, proxies in front of what a
row cuts, and the three services, all pointed at the run's own RabbitMQ node or cluster (one
vhost per row) and a fresh database (PostgreSQL at 127.0.0.1:5432 when it answers, else a
SQLite file)."""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from chaos.proxy import Proxy
from dev import harness, waiting
from dev.harness import PAGE_ID, ROOT
from dev.ports import answers, release
from dev.rabbit_node import Broker
from dev.scratch_database import create_database, drop_database
from shared.contracts import topology

__all__ = ["PAGE_ID", "ROOT", "System", "wait_for"]
PAGE_TOKEN = "chaos-page-token"
PG_ADMIN_URL = os.environ.get(
    "CHAOS_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_MAIN_QUEUES = {"uploader": topology.IMAGE_UPLOADS.name, "notifier": topology.ALBUM_SETTLED.name}

#: What every row runs with; a row overrides some (MAX_ATTEMPTS where it needs exhaustion).
BASE_SETTINGS = {
    "RETRY_DELAYS": "1,2,4",
    "MAX_ATTEMPTS": "12",
    "DELIVERY_LIMIT": "20",
    "UPLOADER_CONCURRENCY": "4",
    "NOTIFIER_CONCURRENCY": "2",
    "SHUTDOWN_GRACE_S": "2",
    "API_THREADS": "16",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
    # Text lines: the rows read the consumers' "consuming ... on host:port" lines by pattern.
    "LOG_FORMAT": "text",
    # Graph calls end within 15 s here (the slowest row holds a photo 8 s), so an attempt of a
    # killed uploader is over (or on Facebook) well before its image is looked at again.
    "GRAPH_TIMEOUT_S": "15",
}


#: How the harness polls: a service or stand-in may be down or restarting meanwhile, which is
#: "not yet" rather than an error, and a few times a second is often enough for processes.
wait_for = functools.partial(
    waiting.wait_for, every=0.2, tolerate=(requests.RequestException, OSError)
)


class Database:
    """A fresh database of the row's own, dropped afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.postgres = answers(5432)
        self.name = f"chaos_{uuid.uuid4().hex[:12]}"
        self._sqlite = workdir / "albums.db"

    def create(self) -> None:
        if self.postgres:
            create_database(PG_ADMIN_URL, self.name)

    def drop(self) -> None:
        if self.postgres:
            drop_database(PG_ADMIN_URL, self.name)

    def url(self, port: int = 5432) -> str:
        if not self.postgres:
            return f"sqlite:///{self._sqlite}"
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{self.name}"


class System(harness.System):
    """dev/harness.py's system for a row: the run's node and a vhost of the row's own, a fresh
    database, and proxies in front of S3, SMTP and (PostgreSQL) the store that a row cuts."""

    def __init__(self, node: Broker, workdir: Path, settings: Mapping[str, str]) -> None:
        self.node = node
        self.vhost = f"chaos-{uuid.uuid4().hex[:8]}"
        self.db = Database(workdir)
        self.restarts: dict[str, int] = {}
        self.proxies: dict[str, Proxy] = {}
        if self.db.postgres:
            self.proxies["store"] = Proxy(5432, "store")
        store_port = self.proxies["store"].port if "store" in self.proxies else 5432
        self.amqp_url = node.url(self.vhost)
        super().__init__(
            workdir,
            self.amqp_url,
            self.db.url(store_port),
            {
                **BASE_SETTINGS,
                **settings,
                # The node's own management port: the policies go to it, not to a shared broker.
                "RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{node.management_port}",
            },
            bucket="albums-chaos",
            page_token=PAGE_TOKEN,
        )

    def route(self, name: str, port: int) -> int:
        """S3 and SMTP through a proxy the row can cut."""
        self.proxies[name] = Proxy(port, name)
        return self.proxies[name].port

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Everything at once (the services wait for nothing but the store and the broker),
        then wait until each part answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.node.add_vhost(self.vhost)
        self.db.create()
        for proxy in self.proxies.values():
            proxy.start()
        self.spawn_stand_ins()
        for name in harness.SERVICES:
            self.start_service(name)
        for name in self.stand_ins:
            self.wait_listening(name, 60)
        self.s3().create_bucket(Bucket=self.bucket)
        self.wait_api(60)
        wait_for(self._consuming, 60, what="both consumers")

    def stop(self, name: str | None = None, grace: float = 20) -> None:
        """One process (`name`), or the whole row: its processes, proxies, vhost and database."""
        if name is not None:
            super().stop(name, grace)
            return
        self.stop_all(grace)
        for proxy in self.proxies.values():
            proxy.stop()
            release(proxy.port)
        try:
            self.node.delete_vhost(self.vhost)
        except requests.RequestException:
            pass
        self.db.drop()

    def kill_service(self, name: str) -> None:
        self.kill(name)
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def _consuming(self) -> bool:
        return all(self.consumed_since(name, 1) for name in ("uploader", "notifier"))

    def consumed_since(self, name: str, starts: int) -> bool:
        """Whether the service's log says it consumed `starts` times (once per connection).
        The management API's consumer counts lag by seconds; the log does not."""
        # The service's main queue only: the uploader consumes its feed posts too.
        queue = _MAIN_QUEUES[name]
        return self.logs(name).count(f"{queue}: consuming with concurrency") >= starts

    def graph_faults(self, **faults: Any) -> None:
        self.set_faults(**faults)


ALBUM_LINK = re.compile(r"/albums/([0-9a-f]{32})")
