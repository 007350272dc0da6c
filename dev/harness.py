"""The system as processes: the stand-ins (S3, the Graph simulator, the mail catcher) and the
services, each on a port of the run's own (dev/ports.py), with its output in a log file.

The one harness of the end-to-end tests (tests/e2e/conftest.py), the bench (bench/system.py)
and the chaos run (chaos/system.py); what differs between them comes in as parameters: the
settings, which stand-ins run, and `route`, which puts a proxy between the services and a
stand-in.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import requests
from cryptography.fernet import Fernet

from dev import waiting
from dev.ports import answers, free_port, release

ROOT = Path(__file__).resolve().parents[1]
PAGE_ID = "1000000000000001"
STAND_INS = ("s3", "graph", "mail")
SERVICES = ("api", "uploader", "notifier")
#: What each process listens on; the mail catcher serves SMTP and its inbox.
_LISTENS = {"s3": ("s3",), "graph": ("graph",), "mail": ("smtp", "mail"), "api": ("api",)}

#: A service or stand-in still starting (or restarting) refuses the probe: "not yet".
wait_for = functools.partial(
    waiting.wait_for, every=0.1, tolerate=(requests.RequestException, OSError)
)


class ProcessDied(RuntimeError):
    """A process the harness waits for exited: its log's end says why."""


class System:
    def __init__(
        self,
        workdir: Path,
        amqp_url: str,
        database_url: str,
        settings: Mapping[str, str] | None = None,
        *,
        bucket: str = "albums-test",
        page_token: str = "test-page-token",
        stand_ins: Sequence[str] = STAND_INS,
    ) -> None:
        self.workdir = workdir
        self.bucket = bucket
        self.stand_ins = tuple(stand_ins)
        self.ports = {name: free_port() for name in ("s3", "graph", "smtp", "mail", "api")}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.graph_url = f"http://127.0.0.1:{self.ports['graph']}"
        self.mail_url = f"http://127.0.0.1:{self.ports['mail']}"
        self.env = self._environment(amqp_url, database_url, page_token, settings or {})
        self._s3: Any = None

    def route(self, name: str, port: int) -> int:
        """The port the services reach stand-in port `name` on; a caller may put a proxy in
        between (chaos cuts S3 and SMTP that way)."""
        return port

    def _environment(
        self, amqp_url: str, database_url: str, page_token: str, settings: Mapping[str, str]
    ) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "AMQP_URL": amqp_url,
            "DATABASE_URL": database_url,
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.route('s3', self.ports['s3'])}",
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GRAPH_API_URL": self.graph_url,
            "FACEBOOK_PAGE_ID": PAGE_ID,
            "FACEBOOK_PAGE_TOKEN": page_token,
            # Facebook Login's dialog is the simulator's too; Page tokens sealed and session
            # cookies signed with keys of the run's own (none written under var/).
            "FACEBOOK_DIALOG_URL": self.graph_url,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "API_SECRET_KEY": secrets.token_urlsafe(32),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.route("smtp", self.ports["smtp"])),
            "MAIL_UI_PORT": str(self.ports["mail"]),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.ports["api"]),
            "APP_BASE_URL": self.api_url,
            # No health ports: a restarted or second uploader would find its port taken, and
            # tests/integration/test_readiness.py covers them.
            "UPLOADER_HEALTH_PORT": "0",
            "NOTIFIER_HEALTH_PORT": "0",
            "LOG_LEVEL": "INFO",
            **settings,
        }

    # -- processes -----------------------------------------------------------------------------

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start `args` as `name`, its output appended to `name`.log in the work folder."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / f"{name}.log", "ab") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                args, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def start_stand_ins(self, timeout: float = 60) -> None:
        """The stand-ins; returns once they listen, with the bucket made."""
        self.spawn_stand_ins()
        for name in self.stand_ins:
            self.wait_listening(name, timeout)
        if "s3" in self.stand_ins:
            self.s3().create_bucket(Bucket=self.bucket)

    def spawn_stand_ins(self) -> None:
        py = sys.executable
        commands = {
            "s3": ("-m", "dev.s3_server", "--port", str(self.ports["s3"])),
            "graph": ("-m", "dev.graph_simulator", "--port", str(self.ports["graph"])),
            "mail": (
                "-m",
                "dev.mail_catcher",
                "--smtp-port",
                str(self.ports["smtp"]),
                "--http-port",
                str(self.ports["mail"]),
            ),
        }
        for name in self.stand_ins:
            self.spawn(name, py, *commands[name])

    def start_service(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, sys.executable, "-m", f"services.{name}", **env)

    def start_all(self, timeout: float = 60) -> None:
        """The stand-ins, then the three services; returns once the API answers."""
        self.start_stand_ins(timeout)
        for name in SERVICES:
            self.start_service(name)
        self.wait_api(timeout)

    def wait_listening(self, name: str, timeout: float = 60) -> None:
        """Until each port of process `name` answers; ProcessDied at once if it exited."""
        for port_name in _LISTENS[name]:
            port = self.ports[port_name]
            wait_for(
                functools.partial(self._listens, name, port),
                timeout,
                what=f"{name} to listen on {port}",
            )

    def _listens(self, name: str, port: int) -> bool:
        return self._alive_or_raise(name) and answers(port)

    def wait_api(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self._alive_or_raise("api") and self._api_healthy(), timeout, what="the API"
        )

    def _api_healthy(self) -> bool:
        return requests.get(f"{self.api_url}/healthz", timeout=2).ok

    def _alive_or_raise(self, name: str) -> bool:
        code = self.processes[name].poll()
        if code is not None:
            raise ProcessDied(f"{name} exited with {code}:\n{self.logs(name)[-2000:]}")
        return True

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM kill would: no grace, nothing flushed."""
        process = self.processes[name]
        process.kill()
        process.wait(10)

    def stop(self, name: str, grace: float = 20) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            _stop([process], grace)

    def stop_all(self, grace: float = 20) -> None:
        """Every process (SIGTERM, then SIGKILL after `grace`), then the ports go back."""
        _stop(list(self.processes.values()), grace)
        for port in self.ports.values():
            release(port)
        if self._s3 is not None:
            self._s3.close()
            self._s3 = None

    def logs(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    # -- the stand-ins -------------------------------------------------------------------------

    def s3(self) -> Any:
        """The S3 stand-in's client: one for the run (boto3's are thread-safe), closed with
        `stop_all`, rather than one per call left to the garbage collector."""
        if self._s3 is None:
            self._s3 = boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._s3

    def put(self, key: str, body: bytes, content_type: str = "image/png") -> str:
        """Store an object in the bucket; its SHA-256."""
        self.s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return hashlib.sha256(body).hexdigest()

    def set_faults(self, **faults: Any) -> None:
        requests.put(f"{self.graph_url}/_sim/faults", json=faults, timeout=10).raise_for_status()

    def photos(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.graph_url}/_sim/photos", timeout=30).json()["photos"])

    def posts(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.graph_url}/_sim/posts", timeout=30).json()["posts"])

    def smtp_reply(self, reply: str | None) -> None:
        requests.put(
            f"{self.mail_url}/api/faults", json={"reply": reply}, timeout=10
        ).raise_for_status()

    def mails(self, to: str | None = None) -> list[dict[str, Any]]:
        """The caught mails (those to `to`), each whole."""
        listing = requests.get(f"{self.mail_url}/api/messages", timeout=30).json()["messages"]
        return [
            requests.get(f"{self.mail_url}/api/messages/{m['id']}", timeout=30).json()
            for m in listing
            if to is None or to in m["to"]
        ]

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        return self.mails(address)

    # -- the API -------------------------------------------------------------------------------

    def create_user(self, email: str, operator: bool = False) -> dict[str, Any]:
        flag = ["--operator"] if operator else []
        out = subprocess.run(
            [sys.executable, "-m", "services.api", "create-user", email, *flag],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            check=True,
            text=True,
            timeout=60,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def publish(
        self,
        token: str,
        album: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> requests.Response:
        """POST /api/albums with `album` (or the fields given by name)."""
        headers = {"Authorization": f"Bearer {token}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return requests.post(
            f"{self.api_url}/api/albums",
            json={**(album or {}), **fields},
            timeout=60,
            headers=headers,
        )

    def album(self, token: str, album_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.api_url}/api/albums/{album_id}",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        return dict(response.json())

    def wait_settled(
        self, token: str, album_id: str, timeout: float = 90, every: float = 0.2
    ) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            album = self.album(token, album_id)
            return album if album["state"] != "publishing" else None

        return waiting.wait_for(settled, timeout, every=every, what=f"album {album_id} to settle")


def _stop(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
