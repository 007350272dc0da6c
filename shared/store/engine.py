"""The store's engine: SQLite (the embedded default) or PostgreSQL, each set up for several
processes writing at once, and the in-place upgrade of a store made by an older version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url

from shared.store.tables import Base

#: libpq parameters of every PostgreSQL connection, unless DATABASE_URL sets one itself
#: (`...?connect_timeout=10`, `...?options=-c%20statement_timeout%3D60s`). Without them a
#: partition, which sends no RST, hangs a service forever. Transactions here take milliseconds,
#: so: connect within 5 s; give up on a peer gone silent after about 20 s, whether we wait on
#: it (keepalive probes after 5 s idle, 3 of them 5 s apart) or it does not acknowledge what we
#: sent (TCP user timeout); and have the server end a statement, or a transaction left idle by a
#: client cut off mid-way (holding its row locks), after 30 s.
PG_CONNECT_ARGS: dict[str, str | int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
    "options": "-c statement_timeout=30s -c idle_in_transaction_session_timeout=30s",
}


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for the store; on SQLite, `read_only` gives one whose transactions read a
    snapshot without queueing for the single writer."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith("sqlite"):
        # Enough connections for a consumer's threads and the API's, without queueing; a
        # checkout waits for a free one no longer than a statement may run.
        given = make_url(url).query
        # READ COMMITTED whatever the server's default: an image that ends waits for the album
        # row's lock and must then count the images others ended meanwhile. Under REPEATABLE
        # READ its snapshot predates them, and the last two images ending together would both
        # miss the settle.
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=20,
            max_overflow=20,
            pool_timeout=30,
            isolation_level="READ COMMITTED",
            connect_args={key: value for key, value in PG_CONNECT_ARGS.items() if key not in given},
        )
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself, and make every transaction take the write lock
        # up front: several processes write, and a read-then-write upgrade could fail.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        # In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a process
        # that dies loses nothing, only a power cut may lose the last commits (and the
        # uploader's reconcile finds any photo whose record went with them).
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

        if read_only:
            dbapi_conn.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # A reader's deferred BEGIN takes a WAL snapshot and leaves the writer alone.
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def add_missing_columns(connection: Any) -> set[tuple[str, str]]:
    """Upgrade a store made by an older version: add the nullable columns it lacks, and the
    indexes. Returns the (table, column) pairs added, for data that must follow them."""
    inspector = inspect(connection)
    added: set[tuple[str, str]] = set()
    for table in Base.metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(connection.dialect)
                connection.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                )
                added.add((table.name, column.name))
        for index in table.indexes:  # an index made for a column added just now
            index.create(connection, checkfirst=True)
    return added
