"""What one image costs the store on PostgreSQL, counted on the wire (libpq's trace of every
connection): the round trips and SQL statements of the uploader's whole path for an image of
an album whose Facebook album exists (start the attempt, send, record the upload, release the
album's next turn and settle, mark the outbox rows published).

Counting rather than timing: on a loaded machine the figures of issue 14's P3 and P9 move with
the load, while each round trip is a wait on the database that every image pays. Each
transaction costs the pool's ping, BEGIN and COMMIT besides its statements.
"""

from __future__ import annotations

import statistics
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, Any, cast

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event, text

from dev.images import png
from services.uploader.handler import ImageUploader, Policy
from services.uploader.pages import Pages
from services.uploader.throttle_gate import ThrottleGate
from shared.adapters.graph_client import GraphClient
from shared.broker.publisher import Publisher
from shared.config.token_cipher import TokenCipher
from shared.contracts import messages, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, decide
from shared.store import Store
from tests.conftest import fresh_postgres_database
from tests.present import present

from .helpers import PAGE_ID, TOKEN, VERSION, get_all, uploader_publisher
from .store_tally import tally

pytestmark = pytest.mark.integration

BUCKET = "round-trips-test"
POLICY = Policy(retry_delays=(1, 3), max_attempts=3)
#: An album as P9 publishes them: 20 images, its window of turns as wide as the uploads.
IMAGES, WINDOW = 20, 8
#: The most one image may cost once its album's Facebook album exists: round trips (the median
#: image: a connection's first uses of a statement add psycopg's prepare) and statements.
#: Before the start was folded into one statement: 42 round trips and 21 statements.
MAX_ROUND_TRIPS, MAX_STATEMENTS = 14, 9
#: The most a redelivered message of an image uploaded already may cost (bench row P7): the take
#: that misses and the read that says the image ended, each in autocommit after the pool's ping.
#: Before that read it went the long way too: 17 round trips and 7 statements.
MAX_ENDED_ROUND_TRIPS, MAX_ENDED_STATEMENTS = 3, 2


class WireCount:
    """libpq's trace of every connection the store opens from now on, counted per image."""

    def __init__(self, store: Store) -> None:
        self._file: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        self._store = store
        store.dispose()  # every connection from now on is a traced one
        for engine in {store.engine, store._read_engine}:
            event.listen(engine, "connect", self._trace)

    def _trace(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.pgconn.trace(self._file.fileno())

    def mark(self) -> int:
        self._file.flush()
        return self._file.seek(0, 2)

    def since(self, mark: int) -> tuple[int, int]:
        """(round trips, statements) written to the wire since `mark`: a simple Query or an
        extended query's Sync waits for the server's answer; BEGIN, COMMIT and the ping are
        round trips but not the path's statements."""
        self._file.flush()
        self._file.seek(mark)
        sent = [line.split("\t") for line in self._file.read().splitlines()]
        self._file.seek(0, 2)
        frontend = [fields for fields in sent if len(fields) > 3 and fields[1] == "F"]
        trips = sum(1 for f in frontend if f[3] in ("Query", "Sync"))
        overhead = sum(
            1
            for f in frontend
            if f[3] == "Query" and f[4].strip(' "').split(" ")[0] in ("BEGIN", "COMMIT", ";")
        )
        statements = sum(1 for f in frontend if f[3] in ("Query", "Parse", "Bind")) - overhead
        # An extended query sends Parse (unless prepared already) and Bind: count Binds only.
        statements -= sum(1 for f in frontend if f[3] == "Parse")
        return trips, statements

    def close(self) -> None:
        for engine in {self._store.engine, self._store._read_engine}:
            event.remove(engine, "connect", self._trace)
        self._store.dispose()
        self._file.close()


@pytest.fixture()
def pg_store() -> Iterator[Store]:
    """A database of its own: the session's shared one may hold another test's throttle hold
    or blocked Page, which would send the first image to a retry tier instead."""
    with fresh_postgres_database() as url:
        store = Store(url)
        store.create_schema()
        yield store
        store.dispose()


@pytest.fixture()
def publisher(amqp_url: str) -> Iterator[Publisher]:
    with uploader_publisher(
        amqp_url, POLICY.retry_delays, (topology.ALBUM_SETTLED.name, topology.IMAGE_UPLOADS.name)
    ) as publisher:
        yield publisher


class CountedS3:
    """The S3 client, its GETs counted: an image's object is opened once, its pixel size read
    from the bytes its send streams (`services/uploader/source.py`)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        self.gets += 1
        return self._client.get_object(**kwargs)


def _uploader(store: Store, publisher: Publisher, sim: str, s3_client: Any) -> ImageUploader:
    """The uploader as its process makes it: each album's Page (here the single-tenant one, as
    in the bench), the throttle gate, the outbox."""

    def client(page_id: str, token: str) -> GraphClient:
        return GraphClient(sim, VERSION, page_id, token)

    cipher = TokenCipher(Fernet.generate_key().decode())
    return ImageUploader(
        store,
        Outbox(store, publisher, grace=timedelta(0)),
        None,
        s3_client,
        BUCKET,
        POLICY,
        gate=ThrottleGate(store, PAGE_ID),
        pages=Pages(store, cipher, client, (PAGE_ID, TOKEN)),
    )


def _album(store: Store, s3_client: Any) -> tuple[str, list[Delivery]]:
    """An album of IMAGES with its window: the deliveries of the images released so far."""
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    keys = [f"{user.prefix}{n:02d}.png" for n in range(IMAGES)]
    for n, key in enumerate(keys):
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=png(48, 32, seed=n))
    album_id, rows = store.create_album(user.id, "Round trips", None, keys, window=WINDOW)
    return album_id, [Delivery(row.body, {}, False, row.message_id, "image.upload") for row in rows]


def test_an_image_costs_few_round_trips_and_one_s3_request(
    pg_store: Store, publisher: Publisher, sim: str, s3_client: Any, amqp_url: str
) -> None:
    album_id, deliveries = _album(pg_store, s3_client)
    s3 = CountedS3(s3_client)
    uploader = _uploader(pg_store, publisher, sim, s3)
    # The first image creates the Facebook album: not the steady state counted here.
    assert decide(uploader.route(), deliveries.pop(0)).outgoing == ()
    wire = WireCount(pg_store)
    try:
        costs: list[tuple[int, int]] = []
        while deliveries:
            mark = wire.mark()
            assert decide(uploader.route(), deliveries.pop(0)).outgoing == ()
            costs.append(wire.since(mark))
            # The next turn, released by the image that ended, as the broker would deliver it.
            deliveries += [
                Delivery(body, {}, False, f"turn-{len(costs)}", "image.upload")
                for _, body in get_all(amqp_url, topology.IMAGE_UPLOADS.name)
            ]
    finally:
        wire.close()
    assert present(pg_store.album(album_id)).state == "done"
    assert len(costs) == IMAGES - 1
    assert s3.gets == IMAGES, "one S3 request per image"
    print(f"round trips and statements per image: {costs}")
    assert statistics.median(trips for trips, _ in costs) <= MAX_ROUND_TRIPS, costs
    assert max(statements for _, statements in costs) <= MAX_STATEMENTS, costs


class Untouchable:
    """An S3 or Graph client an already-uploaded image must not use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a duplicate of an uploaded image called {name}")


def _uploaded_album(store: Store) -> list[Delivery]:
    """An album whose images were all uploaded, as P7 seeds it: their messages' deliveries."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    keys = [f"{user.prefix}{n:02d}.png" for n in range(IMAGES)]
    album_id, rows = store.create_album(user.id, "Uploaded", None, keys)
    store.mark_published([row.id for row in rows])
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE images SET state = 'uploaded', attempts = 1, photo_id = 'p-' || id"
                " WHERE album_id = :id"
            ),
            {"id": album_id},
        )
        connection.execute(
            text("UPDATE albums SET state = 'done', settle_seq = 1 WHERE id = :id"),
            {"id": album_id},
        )
    return [Delivery(row.body, {}, True, row.message_id, "image.upload") for row in rows]


def _duplicates_uploader(store: Store) -> ImageUploader:
    """The uploader as its process makes it, with S3 and Graph clients that fail if used."""
    cipher = TokenCipher(Fernet.generate_key().decode())
    return ImageUploader(
        store,
        Outbox(store, cast(Publisher, Untouchable()), grace=timedelta(0)),
        None,
        Untouchable(),
        BUCKET,
        POLICY,
        gate=ThrottleGate(store, PAGE_ID),
        pages=Pages(store, cipher, lambda _page, _token: Untouchable(), (PAGE_ID, TOKEN)),
    )


def test_a_duplicate_of_an_uploaded_image_costs_one_take_and_one_read(pg_store: Store) -> None:
    """A redelivery or replay of an image uploaded already (P7's path) is acked after the take
    that misses and one read, asking neither S3 nor Facebook: not the long way's checks."""
    deliveries = _uploaded_album(pg_store)
    uploader = _duplicates_uploader(pg_store)
    # The album's Page, read once per process: not the steady state counted here.
    assert decide(uploader.route(), deliveries.pop(0)).outgoing == ()
    wire = WireCount(pg_store)
    try:
        costs: list[tuple[int, int]] = []
        for delivery in deliveries:
            mark = wire.mark()
            assert decide(uploader.route(), delivery).outgoing == ()
            costs.append(wire.since(mark))
    finally:
        wire.close()
    message = messages.decode(deliveries[0].body)
    assert isinstance(message, messages.ImageUploadRequested)
    image = present(pg_store.image(message.image_id))
    assert (image.state, image.attempts) == ("uploaded", 1), "the duplicate changed nothing"
    print(f"round trips and statements per duplicate: {costs}")
    assert statistics.median(trips for trips, _ in costs) <= MAX_ENDED_ROUND_TRIPS, costs
    assert max(statements for _, statements in costs) <= MAX_ENDED_STATEMENTS, costs


def test_a_duplicate_of_an_uploaded_image_is_one_transaction_on_sqlite(sqlite_store: Store) -> None:
    """The same on SQLite (the bench's store): one transaction, the take and the read."""
    deliveries = _uploaded_album(sqlite_store)
    uploader = _duplicates_uploader(sqlite_store)
    assert decide(uploader.route(), deliveries.pop(0)).outgoing == ()
    costs = []
    for delivery in deliveries:
        with tally(sqlite_store) as counted:
            assert decide(uploader.route(), delivery).outgoing == ()
        statements = [s for s in counted.statements if not s.startswith("BEGIN")]
        costs.append((counted.transactions, len(statements)))
    print(f"transactions and statements per duplicate: {costs}")
    assert max(transactions for transactions, _ in costs) <= 1, costs
    assert max(statements for _, statements in costs) <= MAX_ENDED_STATEMENTS, costs
