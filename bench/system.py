"""The real processes a measurement needs: the stand-ins (moto for S3, the Graph simulator), the
API and the uploader, on free loopback ports, with a vhost and a store of their own.

The same environment variables as tests/e2e/conftest.py, without pytest: the bench is not a test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import requests
from sqlalchemy import create_engine, text

from bench.common import PY, ROOT, VAR, Options, Proc, answers, base_env, free_port, wait_for

PAGE_ID = "1000000000000001"
PAGE_TOKEN = "bench-page-token"
BUCKET = "albums-bench"


@contextlib.contextmanager
def database(opts: Options, label: str) -> Iterator[str]:
    """A fresh store: a SQLite file under var/bench, or a PostgreSQL database dropped after."""
    if opts.store == "sqlite":
        path = VAR / f"{label}-{uuid.uuid4().hex[:6]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    parts = urlsplit(opts.postgres_url)
    name = f"albums_bench_{label}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(opts.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


class System:
    def __init__(self, label: str, amqp_url: str, database_url: str, **env: str) -> None:
        self.label = label
        self.ports = {name: free_port() for name in ("s3", "graph", "api")}
        self.database_url = database_url
        self.env = base_env(
            AMQP_URL=amqp_url, DATABASE_URL=database_url,
            S3_ENDPOINT_URL=f"http://127.0.0.1:{self.ports['s3']}", S3_BUCKET=BUCKET,
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            GRAPH_API_URL=f"http://127.0.0.1:{self.ports['graph']}",
            FACEBOOK_PAGE_ID=PAGE_ID, FACEBOOK_PAGE_TOKEN=PAGE_TOKEN,
            API_PORT=str(self.ports["api"]), RETRY_DELAYS="1,2,5", MAX_ATTEMPTS="4",
            SHUTDOWN_GRACE_S="5", LOG_LEVEL="INFO",
            # No health ports: several uploaders run at once on one machine.
            UPLOADER_HEALTH_PORT="0", NOTIFIER_HEALTH_PORT="0",
            # The bench publishes hundreds of albums from one user in seconds (P1: 300 x 20
            # images): far past the per-user defaults, which it does not measure.
            PUBLISH_RATE_LIMIT="100000 per minute", IMAGES_PER_DAY="10000000",
            # At least the largest total concurrency a row runs (P3: 20), so that a lone album
            # uses every upload; a row about turns between albums sets its own.
            ALBUM_WINDOW="20",
        )
        self.env.update(env)
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.graph_url = f"http://127.0.0.1:{self.ports['graph']}"
        self.procs: dict[str, Proc] = {}
        self.http = requests.Session()

    # -- processes -------------------------------------------------------------------------

    def start(self, name: str, *args: str, **env: str) -> Proc:
        proc = Proc(f"{self.label}-{name}", args, {**self.env, **env})
        self.procs[name] = proc
        return proc

    def start_stand_ins(self) -> None:
        self.start("s3", PY, "-m", "dev.s3_server", "--port", str(self.ports["s3"]))
        self.start("graph", PY, "-m", "dev.graph_simulator", "--port", str(self.ports["graph"]))
        for name in ("s3", "graph"):
            wait_for(functools.partial(answers, self.ports[name]), 30, what=f"{name} to listen")
        self.s3().create_bucket(Bucket=BUCKET)

    def start_api(self, threads: int = 16) -> None:
        self.start("api", PY, "-m", "services.api", API_THREADS=str(threads))
        wait_for(self._api_healthy, 60, what="the API")

    def start_uploader(self, concurrency: int = 4, processes: int = 1) -> Proc:
        """`concurrency` uploads in all, spread over `processes` processes."""
        self.stop("uploader")
        return self.start("uploader", PY, "-m", "services.uploader",
                          UPLOADER_CONCURRENCY=str(concurrency // processes),
                          UPLOADER_PROCESSES=str(processes))

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.http.close()

    def _api_healthy(self) -> bool:
        try:
            return self.http.get(f"{self.api_url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    # -- what the measurements do -------------------------------------------------------------

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT_URL"],
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def create_user(self, email: str) -> dict[str, Any]:
        out = subprocess.run([PY, "-m", "services.api", "create-user", email], cwd=ROOT,
                             env=self.env, capture_output=True, check=True, text=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def put_images(self, prefix: str, body: bytes, count: int, label: str) -> list[str]:
        """`count` objects with the same bytes (the content does not matter, the size does)."""
        client = self.s3()
        first = f"{prefix}{label}/0000.png"
        client.put_object(Bucket=BUCKET, Key=first, Body=body, ContentType="image/png")
        keys = [first]
        for i in range(1, count):
            key = f"{prefix}{label}/{i:04d}.png"
            client.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": first})
            keys.append(key)
        return keys

    def post_album(self, token: str, title: str, keys: list[str]) -> str:
        response = self.http.post(f"{self.api_url}/api/albums", timeout=30,
                                  json={"title": title, "images": keys},
                                  headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return str(response.json()["id"])

    def album(self, token: str, album_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api_url}/api/albums/{album_id}", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return dict(response.json())

    def wait_settled(self, token: str, album_id: str, timeout: float = 120) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            album = self.album(token, album_id)
            return album if album["state"] != "publishing" else None

        # The time is read from the store's settled_at, so the poll rate does not change it; a
        # slow poll keeps the API's work from taking the CPU the measured uploads need.
        return wait_for(settled, timeout, every=0.25, what=f"album {album_id} to settle")

    def set_faults(self, **faults: Any) -> None:
        self.http.put(f"{self.graph_url}/_sim/faults", json=faults, timeout=5).raise_for_status()


def rss_peak_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM) in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise LookupError(f"no VmHWM for {pid}")


def settle_seconds(database_url: str, album_id: str, started_utc: float) -> float:
    """From `started_utc` (time.time() before the POST) to the album's settled_at in the store:
    the exact moment, where polling the API would add up to one poll interval."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            settled = connection.execute(text("SELECT settled_at FROM albums WHERE id = :id"),
                                         {"id": album_id}).scalar_one()
    finally:
        engine.dispose()
    if isinstance(settled, str):  # SQLite hands back text
        settled = datetime.fromisoformat(settled)
    return float(settled.replace(tzinfo=UTC).timestamp() - started_utc)


