"""The store's tables (SQLAlchemy ORM) and the states an album and an image go through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, LargeBinary, String, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from shared.outgoing import Outgoing

PUBLISHING, DONE, DONE_WITH_FAILURES = "publishing", "done", "done_with_failures"
QUEUED, UPLOADING, RETRYING, UPLOADED, FAILED = (
    "queued", "uploading", "retrying", "uploaded", "failed")
TERMINAL = frozenset({UPLOADED, FAILED})
SEND, SENT, BUSY = "send", "sent", "busy"


def utcnow() -> datetime:
    # Naive UTC throughout: SQLite keeps no zone, and both stores must compare alike.
    return datetime.now(UTC).replace(tzinfo=None)


class db_now(FunctionElement[datetime]):  # noqa: N801 (an SQL function, named as one)
    """The database's clock, naive UTC like every stored time.

    Leases, in-flight windows, quiet times and the relay's claims are compared across hosts:
    one whose clock is a few minutes off would take an image still in flight. So the times
    they compare are taken from the one clock all processes share, the database's.
    """

    type = DateTime()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _db_now_postgresql(_element: db_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    # now() is a timestamptz: in UTC, without its zone, it compares with the stored times.
    return "(now() AT TIME ZONE 'UTC')"


@compiles(db_now, "sqlite")
def _db_now_sqlite(_element: db_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    # CURRENT_TIMESTAMP has whole seconds only; this is SQLAlchemy's own text form (UTC).
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


@compiles(db_now)
def _db_now_default(_element: db_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Album(Base):
    __tablename__ = "albums"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    notify_email: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(32), default=PUBLISHING)
    fb_album_id: Mapped[str | None] = mapped_column(String(64))
    fb_album_claimed_at: Mapped[datetime | None]
    settle_seq: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    settled_at: Mapped[datetime | None]


class Image(Base):
    __tablename__ = "images"
    # The times the database writes itself are read back at once (RETURNING), not left
    # expired on an object handed out of its session.
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), index=True)
    position: Mapped[int]
    key: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(32), default=QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    photo_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[int | None]
    next_attempt_at: Mapped[datetime | None]
    #: When the latest attempt started, and until when its uploader vouches it is alive.
    attempt_started_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    #: The latest attempt's outcome is unknown (a read timeout, a reset after sending, a 5xx):
    #: its photo may still reach Facebook until its request would have timed out.
    in_doubt: Mapped[bool | None]
    #: The message that started the latest attempt: its redelivery is not a stale duplicate.
    attempt_message_id: Mapped[str | None] = mapped_column(String(64))
    #: When the image's current upload message entered the work queue (written, or back from
    #: its retry tier): where it stands in the queue, for the sweeper.
    queued_at: Mapped[datetime | None] = mapped_column(default=db_now())
    updated_at: Mapped[datetime] = mapped_column(default=db_now(), onupdate=db_now())


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    exchange: Mapped[str] = mapped_column(String(200))
    routing_key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=db_now())
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_until: Mapped[datetime | None]

    def outgoing(self) -> Outgoing:
        return Outgoing(self.exchange, self.routing_key, self.body, headers=self.headers,
                        message_id=self.message_id)


class Notification(Base):
    __tablename__ = "notifications"
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), primary_key=True)
    settle_seq: Mapped[int] = mapped_column(primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
