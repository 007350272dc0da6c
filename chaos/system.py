"""The system under test as processes: stand-ins, proxies in front of what a row cuts, and the
three services, all pointed at the run's own RabbitMQ node or cluster (one vhost per row) and a
fresh database (PostgreSQL at 127.0.0.1:5432 when it answers, else a SQLite file)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from chaos.node import Broker
from chaos.proxy import Proxy
from dev import waiting
from dev.ports import answers, free_port
from shared import topology

ROOT = Path(__file__).resolve().parents[1]
PAGE_ID = "1000000000000001"
PAGE_TOKEN = "chaos-page-token"
PG_ADMIN_URL = os.environ.get("CHAOS_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SERVICES = ("api", "uploader", "notifier")
_MAIN_QUEUES = {"uploader": topology.IMAGE_UPLOADS.name, "notifier": topology.ALBUM_SETTLED.name}

#: What every row runs with; a row overrides some (MAX_ATTEMPTS where it needs exhaustion).
BASE_SETTINGS = {
    "RETRY_DELAYS": "1,2,4", "MAX_ATTEMPTS": "12", "DELIVERY_LIMIT": "20",
    "UPLOADER_CONCURRENCY": "4", "NOTIFIER_CONCURRENCY": "2", "SHUTDOWN_GRACE_S": "2",
    "API_THREADS": "16", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
    # Text lines: the rows read the consumers' "consuming ... on host:port" lines by pattern.
    "LOG_FORMAT": "text",
    # Graph calls end within 15 s here (the slowest row holds a photo 8 s), so an attempt of a
    # killed uploader is over (or on Facebook) well before its image is looked at again.
    "GRAPH_TIMEOUT_S": "15",
}


#: How the harness polls: a service or stand-in may be down or restarting meanwhile, which is
#: "not yet" rather than an error, and a few times a second is often enough for processes.
wait_for = functools.partial(waiting.wait_for, every=0.2,
                             tolerate=(requests.RequestException, OSError))


class Database:
    """A fresh database of the row's own, dropped afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.postgres = answers(5432)
        self.name = f"chaos_{uuid.uuid4().hex[:12]}"
        self._sqlite = workdir / "albums.db"

    def create(self) -> None:
        if self.postgres:
            self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        if self.postgres:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def url(self, port: int = 5432) -> str:
        if not self.postgres:
            return f"sqlite:///{self._sqlite}"
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{self.name}"

    def _admin(self, statement: str) -> None:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()


class System:
    def __init__(self, node: Broker, workdir: Path, settings: Mapping[str, str]) -> None:
        self.node = node
        self.workdir = workdir
        self.vhost = f"chaos-{uuid.uuid4().hex[:8]}"
        self.db = Database(workdir)
        self.ports = {name: free_port() for name in ("s3", "graph", "smtp", "mail", "api")}
        self.bucket = "albums-chaos"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.proxies = {"s3": Proxy(self.ports["s3"], "s3"),
                        "smtp": Proxy(self.ports["smtp"], "smtp")}
        if self.db.postgres:
            self.proxies["store"] = Proxy(5432, "store")
        self.amqp_url = node.url(self.vhost)
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.graph_url = f"http://127.0.0.1:{self.ports['graph']}"
        self.mail_url = f"http://127.0.0.1:{self.ports['mail']}"
        self.env = self._env(settings)

    def _env(self, settings: Mapping[str, str]) -> dict[str, str]:
        store_port = self.proxies["store"].port if "store" in self.proxies else 5432
        return {
            **os.environ, **BASE_SETTINGS, **settings,
            "AMQP_URL": self.amqp_url,
            # The node's own management port: the policies go to it, not to a shared broker.
            "RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{self.node.management_port}",
            "DATABASE_URL": self.db.url(store_port),
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.proxies['s3'].port}",
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GRAPH_API_URL": self.graph_url,
            "FACEBOOK_PAGE_ID": PAGE_ID, "FACEBOOK_PAGE_TOKEN": PAGE_TOKEN,
            # Users who connect a Page of their own go through the simulator's Facebook Login;
            # their Page tokens are sealed with a key of the row's own (none under var/).
            "FACEBOOK_DIALOG_URL": self.graph_url,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.proxies["smtp"].port),
            "API_HOST": "127.0.0.1", "API_PORT": str(self.ports["api"]),
            "APP_BASE_URL": self.api_url,
            # No health ports: the harness runs and restarts several of each on one machine.
            "UPLOADER_HEALTH_PORT": "0", "NOTIFIER_HEALTH_PORT": "0",
        }

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Everything at once (the services wait for nothing but the store and the broker),
        then wait until each part answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.node.add_vhost(self.vhost)
        self.db.create()
        for proxy in self.proxies.values():
            proxy.start()
        self._start_stand_ins()
        for name in SERVICES:
            self.start_service(name)
        for name in ("s3", "graph", "smtp", "mail"):
            wait_for(functools.partial(answers, self.ports[name]), 60,
                     what=f"{name} to listen")
        self.s3().create_bucket(Bucket=self.bucket)
        wait_for(self._api_healthy, 60, what="the API")
        wait_for(self._consuming, 60, what="both consumers")

    def _start_stand_ins(self) -> None:
        py = sys.executable
        self._spawn("s3", py, "-m", "dev.s3_server", "--port", str(self.ports["s3"]))
        self._spawn("graph", py, "-m", "dev.graph_simulator", "--port", str(self.ports["graph"]))
        self._spawn("mail", py, "-m", "dev.mail_catcher", "--smtp-port", str(self.ports["smtp"]),
                    "--http-port", str(self.ports["mail"]))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for proxy in self.proxies.values():
            proxy.stop()
        try:
            self.node.delete_vhost(self.vhost)
        except requests.RequestException:
            pass
        self.db.drop()

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.processes[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT)
        log.close()

    def start_service(self, name: str) -> None:
        self._spawn(name, sys.executable, "-m", f"services.{name}")

    def kill_service(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM kill would: no grace, nothing flushed."""
        process = self.processes[name]
        process.kill()
        process.wait(10)
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def _api_healthy(self) -> bool:
        return requests.get(f"{self.api_url}/healthz", timeout=2).ok

    def _consuming(self) -> bool:
        return all(self.consumed_since(name, 1) for name in ("uploader", "notifier"))

    def consumed_since(self, name: str, starts: int) -> bool:
        """Whether the service's log says it consumed `starts` times (once per connection).
        The management API's consumer counts lag by seconds; the log does not."""
        # The service's main queue only: the uploader consumes its feed posts too.
        queue = _MAIN_QUEUES[name]
        return self.logs(name).count(f"{queue}: consuming with concurrency") >= starts

    def logs(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    # -- the stand-ins -------------------------------------------------------------------------

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def graph_faults(self, **faults: Any) -> None:
        requests.put(f"{self.graph_url}/_sim/faults", json=faults, timeout=10).raise_for_status()

    def photos(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.graph_url}/_sim/photos", timeout=30)
        return list(response.json()["photos"])

    def posts(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.graph_url}/_sim/posts", timeout=30)
        return list(response.json()["posts"])

    def smtp_reply(self, reply: str | None) -> None:
        requests.put(f"{self.mail_url}/api/faults", json={"reply": reply},
                     timeout=10).raise_for_status()

    def mails(self) -> list[dict[str, Any]]:
        listing = requests.get(f"{self.mail_url}/api/messages", timeout=30).json()["messages"]
        return [requests.get(f"{self.mail_url}/api/messages/{m['id']}", timeout=30).json()
                for m in listing]

    # -- the API -------------------------------------------------------------------------------

    def create_user(self, email: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "services.api", "create-user", email],
                             cwd=ROOT, env=self.env, capture_output=True, check=True, text=True,
                             timeout=60)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def publish(self, token: str, album: Mapping[str, Any],
                idempotency_key: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return requests.post(f"{self.api_url}/api/albums", json=dict(album), timeout=60,
                             headers=headers)


ALBUM_LINK = re.compile(r"/albums/([0-9a-f]{32})")
