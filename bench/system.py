"""The real processes a measurement needs (dev/harness.py): the stand-ins (moto for S3, the
Graph simulator), the API and the uploader, with a vhost and a store of their own."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from bench.common import VAR, Options, Row, blocking, log
from dev import harness
from dev.scratch_database import scratch_database
from shared.contracts import topology

PAGE_ID = "1000000000000001"
PAGE_TOKEN = "bench-page-token"
BUCKET = "albums-bench"


#: The stores a full run measures where issue 14 asks for both: their names in the table.
STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def on_each_store(
    opts: Options, row_id: str, what: str, measure: Callable[[Options], list[Row]]
) -> list[Row]:
    """`measure`'s rows on each store of `STORES` (a quick run: the one `--store` names). A
    store whose pass fails gives an error row; the other store's rows are kept."""
    rows: list[Row] = []
    for store in [opts.store] if opts.quick else list(STORES):
        try:
            rows += measure(dataclasses.replace(opts, store=store))
        except Exception as exc:  # the other store's figures still count
            log(f"{row_id} on {STORES[store]} failed: {type(exc).__name__}: {exc}")
            rows.append(Row.failed(row_id, f"{what}, store: {STORES[store]}", exc))
    return rows


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
    with scratch_database(opts.postgres_url, f"albums_bench_{label}_") as url:
        yield url


class System(harness.System):
    """dev/harness.py's system with the bench's settings: no mail catcher or notifier, logs
    under var/bench/<label>/, and the requests of one kept-alive session."""

    def __init__(self, label: str, amqp_url: str, database_url: str, **env: str) -> None:
        settings = {
            "RETRY_DELAYS": "1,2,5",
            "MAX_ATTEMPTS": "4",
            "SHUTDOWN_GRACE_S": "5",
            # The bench publishes hundreds of albums from one user in seconds (P1: 300 x 20
            # images): far past the per-user defaults, which it does not measure.
            "PUBLISH_RATE_LIMIT": "100000 per minute",
            "IMAGES_PER_DAY": "10000000",
            # At least the largest total concurrency a row runs (P3: 20), so that a lone album
            # uses every upload; a row about turns between albums sets its own.
            "ALBUM_WINDOW": "20",
            **env,
        }
        super().__init__(
            VAR / label,
            amqp_url,
            database_url,
            settings,
            bucket=BUCKET,
            page_token=PAGE_TOKEN,
            stand_ins=("s3", "graph"),
        )
        self.label = label
        self.database_url = database_url
        self.http = requests.Session()

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.processes

    def start_api(self, threads: int = 16) -> None:
        self.declare_topology()
        self.start_service("api", API_THREADS=str(threads))
        self.wait_api(60)

    def declare_topology(self) -> None:
        """The uploader declares the topology, and the API does not (its broker user has no
        configure right); a row that publishes before any uploader ran needs it declared."""
        connection = blocking(self.env["AMQP_URL"])
        try:
            retry_delays = [int(d) for d in self.env["RETRY_DELAYS"].split(",")]
            topology.declare(connection.channel(), retry_delays)
        finally:
            connection.close()

    def start_uploader(self, concurrency: int = 4, processes: int = 1) -> subprocess.Popen[bytes]:
        """`concurrency` uploads in all, spread over `processes` processes."""
        self.stop("uploader")
        return self.start_service(
            "uploader",
            UPLOADER_CONCURRENCY=str(concurrency // processes),
            UPLOADER_PROCESSES=str(processes),
        )

    def stop_all(self, grace: float = 15) -> None:
        super().stop_all(grace)
        self.http.close()

    # -- what the measurements do -------------------------------------------------------------

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
        response = self.http.post(
            f"{self.api_url}/api/albums",
            timeout=30,
            json={"title": title, "images": keys},
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def album(self, token: str, album_id: str) -> dict[str, Any]:
        response = self.http.get(
            f"{self.api_url}/api/albums/{album_id}",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        return dict(response.json())

    def wait_settled(
        self, token: str, album_id: str, timeout: float = 120, every: float = 0.25
    ) -> dict[str, Any]:
        # The time is read from the store's settled_at, so the poll rate does not change it; a
        # slow poll keeps the API's work from taking the CPU the measured uploads need.
        return super().wait_settled(token, album_id, timeout, every)


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
            settled = connection.execute(
                text("SELECT settled_at FROM albums WHERE id = :id"), {"id": album_id}
            ).scalar_one()
    finally:
        engine.dispose()
    if isinstance(settled, str):  # SQLite hands back text
        settled = datetime.fromisoformat(settled)
    return float(settled.replace(tzinfo=UTC).timestamp() - started_utc)
