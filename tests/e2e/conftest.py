"""The whole system as processes: the stand-ins (S3, Graph, SMTP) and the three services,
on free loopback ports, a vhost and a SQLite file of this session's own."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from cryptography.fernet import Fernet

from dev.ports import answers, free_port
from tests.integration.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
PAGE_ID = "1000000000000001"
PAGE_TOKEN = "e2e-page-token"


class System:
    def __init__(self, workdir: Path, amqp_url: str) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("s3", "graph", "smtp", "mail", "api")}
        self.bucket = "albums-e2e"
        self.env = {
            **os.environ,
            "AMQP_URL": amqp_url,
            "DATABASE_URL": f"sqlite:///{workdir}/albums.db",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['s3']}",
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GRAPH_API_URL": f"http://127.0.0.1:{self.ports['graph']}",
            "FACEBOOK_PAGE_ID": PAGE_ID, "FACEBOOK_PAGE_TOKEN": PAGE_TOKEN,
            # Facebook Login's dialog is the simulator's too; Page tokens sealed and session
            # cookies signed with keys of the session's own (none written under var/).
            "FACEBOOK_DIALOG_URL": f"http://127.0.0.1:{self.ports['graph']}",
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "API_SECRET_KEY": secrets.token_urlsafe(32),
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.ports["smtp"]),
            "MAIL_UI_PORT": str(self.ports["mail"]),
            "API_PORT": str(self.ports["api"]),
            "APP_BASE_URL": f"http://127.0.0.1:{self.ports['api']}",
            "RETRY_DELAYS": "1,2", "MAX_ATTEMPTS": "6", "UPLOADER_CONCURRENCY": "4",
            # The uploader's concurrency, as the README advises: albums take even turns.
            "ALBUM_WINDOW": "4",
            "SHUTDOWN_GRACE_S": "5", "GRAPH_TIMEOUT_S": "5",
            "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
            # No health ports: a restarted or second uploader would find its port taken, and
            # tests/integration/test_readiness.py covers them.
            "UPLOADER_HEALTH_PORT": "0", "NOTIFIER_HEALTH_PORT": "0",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.graph_url = f"http://127.0.0.1:{self.ports['graph']}"
        self.mail_url = f"http://127.0.0.1:{self.ports['mail']}"

    # -- processes -----------------------------------------------------------------------------

    def start(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
        self.processes[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        py = sys.executable
        self.start("s3", py, "-m", "dev.s3_server", "--port", str(self.ports["s3"]))
        self.start("graph", py, "-m", "dev.graph_simulator", "--port", str(self.ports["graph"]))
        self.start("mail", py, "-m", "dev.mail_catcher", "--smtp-port", str(self.ports["smtp"]),
                   "--http-port", str(self.ports["mail"]))
        for name in ("s3", "graph", "smtp", "mail"):
            wait_for(partial(answers, self.ports[name]), timeout=30, what=f"{name} to listen")
        self.s3().create_bucket(Bucket=self.bucket)
        self.start("api", py, "-m", "services.api")
        self.start("uploader", py, "-m", "services.uploader")
        self.start("notifier", py, "-m", "services.notifier")
        wait_for(self._api_healthy, timeout=30, what="the API")

    def _api_healthy(self) -> bool:
        try:
            return requests.get(f"{self.api_url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    # -- what the tests do ---------------------------------------------------------------------

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT_URL"],
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def create_user(self, email: str, operator: bool = False) -> dict[str, Any]:
        flag = ["--operator"] if operator else []
        out = subprocess.run([sys.executable, "-m", "services.api", "create-user", email, *flag],
                             cwd=ROOT, env=self.env, capture_output=True, check=True, text=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def put(self, key: str, body: bytes, content_type: str = "image/png") -> str:
        self.s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return hashlib.sha256(body).hexdigest()

    def publish(self, token: str, **album: Any) -> requests.Response:
        return requests.post(f"{self.api_url}/api/albums", json=album, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})

    def album(self, token: str, album_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.api_url}/api/albums/{album_id}", timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return dict(response.json())

    def wait_settled(self, token: str, album_id: str, timeout: float = 90) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            album = self.album(token, album_id)
            return album if album["state"] != "publishing" else None

        return wait_for(settled, timeout=timeout, every=0.2, what=f"album {album_id} to settle")

    def photos(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.graph_url}/_sim/photos", timeout=5).json()["photos"])

    def set_faults(self, **faults: Any) -> None:
        requests.put(f"{self.graph_url}/_sim/faults", json=faults, timeout=5).raise_for_status()

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        listing = requests.get(f"{self.mail_url}/api/messages", timeout=5).json()["messages"]
        return [requests.get(f"{self.mail_url}/api/messages/{m['id']}", timeout=5).json()
                for m in listing if address in m["to"]]


@pytest.fixture(scope="session")
def e2e_amqp_url(broker: Any, make_vhost: Any) -> str:
    """The system's own vhost: its consumers must not take the integration tests' messages."""
    return str(broker.url(make_vhost(for_session=True)))


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, e2e_amqp_url: str) -> Iterator[System]:
    system = System(tmp_path_factory.mktemp("e2e"), e2e_amqp_url)
    try:
        system.start_all()
        yield system
    finally:
        system.stop_all()
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
        requests.put(f"{system.graph_url}/_sim/page", json={"refuse_album_creation": value},
                     timeout=5).raise_for_status()

    refuse(False)
    yield
    refuse(True)
