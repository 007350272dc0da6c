"""The store on PostgreSQL bounds its waits: a partition (which sends no RST) ends in errors
within the timeouts, never in a service hung for good, and the store works once it heals."""

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, OperationalError

from chaos.proxy import Proxy
from shared.store import Store
from tests.present import present

from .helpers import wait_for

pytestmark = pytest.mark.integration

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux's number; Python 3.12 names it


@pytest.fixture()
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    store.create_schema()
    yield store
    store.dispose()


def tcp_options(connection: Connection) -> dict[str, int]:
    """What the kernel was told about the connection's socket."""
    fd = present(connection.connection.dbapi_connection).fileno()
    with socket.socket(fileno=os.dup(fd)) as sock:
        return {
            "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
        }


def test_a_postgres_connection_gets_the_timeouts_unless_the_url_sets_them(
    pg_store: Store, postgres_url: str
) -> None:
    with pg_store.engine.connect() as connection:
        assert connection.scalar(text("SHOW statement_timeout")) == "30s"
        assert connection.scalar(text("SHOW idle_in_transaction_session_timeout")) == "30s"
        assert tcp_options(connection) == {
            "keepalive": 1,
            "idle": 5,
            "interval": 5,
            "count": 3,
            "user_timeout_ms": 20_000,
        }

    tuned = Store(f"{postgres_url}?keepalives_idle=1&options={quote('-c statement_timeout=2s')}")
    try:
        with tuned.engine.connect() as connection:
            assert connection.scalar(text("SHOW statement_timeout")) == "2s"
            assert tcp_options(connection)["idle"] == 1
            assert tcp_options(connection)["user_timeout_ms"] == 20_000
    finally:
        tuned.dispose()


def lockable(store: Store, album_id: str) -> bool:
    """Whether the album row can be locked now (False while another transaction holds it)."""
    try:
        with store.engine.connect() as connection, connection.begin():
            connection.execute(
                text("SELECT id FROM albums WHERE id = :id FOR UPDATE NOWAIT"), {"id": album_id}
            )
        return True
    except OperationalError:
        return False


@pytest.mark.slow
def test_a_partition_ends_in_errors_within_the_timeouts_and_the_store_recovers(
    pg_store: Store, postgres_url: str
) -> None:
    user, _ = pg_store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, _ = pg_store.create_album(user.id, "t", None, [user.prefix + "a"])
    parts = urlsplit(postgres_url)
    proxy = Proxy(parts.port or 5432, "postgres")
    proxy.start()
    # Small timeouts keep the test short: libpq's least connect timeout (2 s), and the server
    # ends a transaction left idle after 1 s.
    through = Store(
        urlunsplit(
            parts._replace(
                netloc=f"{parts.username}@127.0.0.1:{proxy.port}",
                query="connect_timeout=2&options="
                + quote("-c idle_in_transaction_session_timeout=1s"),
            )
        )
    )
    held = through.engine.connect()
    try:
        held.begin()
        held.execute(text("SELECT id FROM albums WHERE id = :id FOR UPDATE"), {"id": album_id})
        assert not lockable(pg_store, album_id)
        proxy.pause()

        # The server ends the transaction the partition cut off, and so frees its row lock...
        wait_for(
            lambda: lockable(pg_store, album_id),
            timeout=10,
            every=0.2,
            what="the server to end the cut-off transaction",
        )
        # ...and a call needing a connection through the partition fails, not hangs.
        started = time.monotonic()
        with pytest.raises(OperationalError):
            through.unpublished_count()
        assert time.monotonic() - started < 5

        proxy.resume()
        with contextlib.suppress(DBAPIError):  # its backend is gone: the close may say so
            held.close()
        assert through.unpublished_count() >= 0
    finally:
        proxy.resume()
        if not held.closed:  # failed before the partition healed: drop it unused
            held.invalidate()
        through.engine.dispose()
        proxy.cut()
