"""The store's tables (SQLAlchemy ORM) and the states an album and an image go through."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.contracts.outgoing import Outgoing
from shared.store.db_clock import utc_now


class AlbumState(StrEnum):
    PUBLISHING = "publishing"
    DONE = "done"
    DONE_WITH_FAILURES = "done_with_failures"


class ImageState(StrEnum):
    QUEUED = "queued"
    UPLOADING = "uploading"
    RETRYING = "retrying"
    UPLOADED = "uploaded"
    FAILED = "failed"
    #: Waiting for its Page: the token was revoked (190) or the Page blocked (368); a reconnect
    #: queues it again. Not terminal: its album does not settle meanwhile.
    PAUSED = "paused"


TERMINAL = frozenset({ImageState.UPLOADED, ImageState.FAILED})


class PageState(StrEnum):
    """A Page connection's states: usable, its token refused (190), or blocked by Facebook
    (368)."""

    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"
    BLOCKED = "blocked"


class ClaimVerdict(StrEnum):
    """What a notifier may do about a settle's email (`Store.claim_notification`): send it,
    nothing (sent already), or wait for another sender (busy)."""

    SEND = "send"
    SENT = "sent"
    BUSY = "busy"


class Destination(StrEnum):
    """Where an album goes on Facebook: a Facebook album made for it, an album of the Page the
    user picked, or one multi-photo post (docs/facebook-destinations.md)."""

    NEW_ALBUM = "new_album"
    EXISTING_ALBUM = "album"
    POST = "post"


DESTINATIONS = tuple(Destination)


class PostState(StrEnum):
    """The multi-photo post's states: waiting for the album to settle, posted, failed for
    good, or waiting for its Page to be reconnected (190, 368: `Store.connect_page` requests
    it again)."""

    PENDING = "pending"
    POSTED = "posted"
    FAILED = "failed"
    PAUSED = "paused"


def utcnow() -> datetime:
    # Naive UTC throughout: SQLite keeps no zone, and both stores must compare alike.
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Bumped on sign-out and on a new token: a session cookie carries the generation it was
    #: signed in under and is refused once it differs. NULL (a store from before it): 0.
    session_generation: Mapped[int | None] = mapped_column(default=0)
    #: "operator" may use the dead-letter desk (/operator/*); NULL or "user": an end user.
    role: Mapped[str | None] = mapped_column(String(16))


class Album(Base):
    __tablename__ = "albums"
    # created_at is the database's: read back at once, not left expired on a handed-out object.
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    #: The user's description of the album (public on Facebook), if any.
    description: Mapped[str | None] = mapped_column(Text)
    notify_email: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(32), default=AlbumState.PUBLISHING)
    # Indexed: a read-back gathers every album of ours publishing to one Facebook album.
    fb_album_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The Facebook Page it publishes to, recorded when it was posted: a later reconnect to
    #: another Page does not move an album in flight. NULL: the single-tenant Page.
    page_id: Mapped[str | None] = mapped_column(String(64))
    #: When a worker claimed the creation of the Facebook album, by the database's clock
    #: (hosts' clocks differ); and whether its create ended without saying if it was made (a
    #: timeout, a 5xx): then the album is looked for (by title and time) before another is created.
    fb_album_claimed_at: Mapped[datetime | None]
    fb_album_create_uncertain: Mapped[bool | None]
    settle_seq: Mapped[int] = mapped_column(default=0)
    #: By the database's clock: the images-per-day quota counts albums by it, and every API
    #: process must agree on what the last 24 hours hold.
    created_at: Mapped[datetime] = mapped_column(default=utc_now(), index=True)
    settled_at: Mapped[datetime | None]
    #: A Destination (NULL: a row from before destinations, a new album).
    destination: Mapped[str | None] = mapped_column(String(16))
    #: Why the destination changed by itself (Facebook refused to create the album), for the
    #: page and the email.
    destination_note: Mapped[str | None] = mapped_column(Text)
    #: The multi-photo post: its state, its id once posted, why it failed.
    post_state: Mapped[str | None] = mapped_column(String(16))
    fb_post_id: Mapped[str | None] = mapped_column(String(64))
    post_error: Mapped[str | None] = mapped_column(Text)
    #: When a worker took the post, by the database's clock: another waits until a post sent
    #: under it can no longer land, then reads the Page's posts before posting.
    post_claimed_at: Mapped[datetime | None]
    #: The photo ids earlier posts attached: a post after a replay attaches only the others.
    posted_photos: Mapped[list[str] | None] = mapped_column(JSON)
    #: At most this many of its images are released to the work queue and not yet ended
    #: (ALBUM_WINDOW when it was published; docs/fair-turns.md). NULL: no limit (an album
    #: from before turns, or a store used without them).
    release_window: Mapped[int | None]
    #: How many images it holds (fixed when it is recorded): the daily quota sums these rather
    #: than counting the day's images album by album. NULL: an album from before the count,
    #: whose images are counted instead.
    image_count: Mapped[int | None]

    # A user's albums page by page, newest first, by keyset (shared/store/album_listing.py):
    # each page is one range of this index however many albums the user has.
    __table_args__ = (Index("ix_albums_user_newest", "user_id", "created_at", "id"),)


class IdempotencyKey(Base):
    """The album a user's POST with an Idempotency-Key created. The primary key makes the key
    unique per user, so of two requests racing with one key only the first commits an album.
    Kept as long as the album (albums are never deleted): well past the 24 h a client may
    retry in."""

    __tablename__ = "idempotency_keys"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"))
    #: sha256 of the album asked for: the same key with another album is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    __tablename__ = "images"
    # The times the database writes itself are read back at once (RETURNING), not left
    # expired on an object handed out of its session.
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), index=True)
    position: Mapped[int]
    key: Mapped[str] = mapped_column(String(1024))
    #: The user's caption for the photo (public on Facebook), if any.
    caption: Mapped[str | None] = mapped_column(Text)
    #: The source's pixel size, read before the first send: with the caption and the first
    #: attempt's start, how a photo an uncertain attempt sent is recognised (no public mark).
    width: Mapped[int | None]
    height: Mapped[int | None]
    #: When the first attempt started, by the database's clock: no photo of this image is older.
    first_attempt_at: Mapped[datetime | None]
    #: When an attempt last began sending to Facebook: until the Graph timeout after it, a
    #: photo of this image may still land (an attempt still reconciling has sent nothing).
    sent_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(32), default=ImageState.QUEUED)
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
    #: The fencing number of the message that started the latest attempt
    #: (shared/contracts/fencing.py): a copy of that message is not stale while the attempt recorded
    #: no outcome.
    attempt_fence: Mapped[int | None]
    #: When the image's current upload message entered the work queue (written, or back from
    #: its retry tier): where it stands in the queue, for the sweeper.
    queued_at: Mapped[datetime | None] = mapped_column(default=utc_now())
    #: True: waiting for its album's turn, no upload message written yet (its album's window is
    #: full). NULL: released, which a row from before turns is too.
    unreleased: Mapped[bool | None]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now(), onupdate=utc_now())

    # The sweeper looks for albums with images waiting for their turn every round: a partial
    # index keeps that look as small as the waiting images, not the whole table.
    # An album page's photos are a slice by position, and the albums list reads each album's
    # first photo (its cover): both a range of the second index, not a scan of the album.
    __table_args__ = (
        Index(
            "ix_images_waiting_turn",
            "album_id",
            postgresql_where=text("unreleased IS TRUE"),
            sqlite_where=text("unreleased IS 1"),
        ),
        Index("ix_images_album_position", "album_id", "position"),
    )


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __mapper_args__ = {"eager_defaults": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    exchange: Mapped[str] = mapped_column(String(200))
    routing_key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: By the database's clock, as every time the relay compares (claimed_until,
    #: next_attempt_at): the writer's and the relays' hosts may disagree.
    created_at: Mapped[datetime] = mapped_column(default=utc_now())
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_until: Mapped[datetime | None]
    #: How many times the broker refused the message (NULL: never), when the relay may try
    #: again (shared/store/outbox_backoff.py) and what the broker said the last time.
    attempts: Mapped[int | None]
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    def outgoing(self) -> Outgoing:
        return Outgoing(
            self.exchange,
            self.routing_key,
            self.body,
            headers=self.headers,
            message_id=self.message_id,
        )


class Notification(Base):
    """One settle's email: claimed by one notifier at a time, then marked sent."""

    __tablename__ = "notifications"
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id"), primary_key=True)
    settle_seq: Mapped[int] = mapped_column(primary_key=True)
    #: When the current claim was taken, by the database's clock (the notifiers' hosts may
    #: disagree with each other; the store's clock is the one they share).
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The current claim's id, its fencing token: only the sender holding it may mark the mail
    #: sent or release the claim, so a sender whose claim lapsed cannot touch the next one's.
    #: (NULL on a claim taken before claims had ids: nobody holds it.)
    claim_id: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None]


class GraphHold(Base):
    """No uploader process sends to this scope (a Page id, or "app") until `until`: Facebook
    named a regain time, or reported usage near its limit (services/uploader/throttle_gate.py).
    Times are the database's clock, which every uploader process shares."""

    __tablename__ = "graph_holds"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime]


class PageConnection(Base):
    """The Facebook Page a user connected, with its Page token sealed by
    `shared.config.token_cipher` (never stored in the clear, never logged, never in a message). One
    per user."""

    __tablename__ = "page_connections"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(64))
    page_name: Mapped[str] = mapped_column(String(300))
    token_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(32), default=PageState.CONNECTED)
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When the connection last stopped (190 or 368), and when its owner was mailed about it:
    #: one email per stop (services/notifier/reconnect_mail.py).
    reconnect_asked_at: Mapped[datetime | None]
    reconnect_mailed_at: Mapped[datetime | None]


#: A dead letter's state in the desk's index: still to deal with, replayed, or purged.
class LetterState(StrEnum):
    """A dead letter's states on the operator's desk."""

    WAITING = "waiting"
    REPLAYED = "replayed"
    PURGED = "purged"


OPERATOR = "operator"


class DeadLetterRecord(Base):
    """The desk's index of one dead letter, written in the transaction that wrote the letter's
    outbox row (or by the consumer for poison, best effort): the desk pages through this table
    and never reads the dead-letter queue in a request. The queue still holds the letter; a
    replayed or purged one is drained from it by the uploader (shared/dead_letter_drain.py)."""

    __tablename__ = "dead_letters"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str] = mapped_column(String(200))
    album_id: Mapped[str | None] = mapped_column(String(32), index=True)
    image_id: Mapped[int | None]
    #: The group: what kind of end (refused, gave up, throttled, poison, error) and the Graph
    #: code, if Facebook gave one.
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    dead_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=LetterState.WAITING)
    handled_by: Mapped[str | None] = mapped_column(String(320))
    handled_at: Mapped[datetime | None]
    #: When the uploader's drain removed its copy from the queue (NULL: not yet).
    drained_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_dead_letters_group", "state", "kind", "code", "dead_at"),
        Index("ix_dead_letters_undrained", "state", "drained_at"),
    )


class AuditEntry(Base):
    """One operator action on the desk: who, when, what, on which target, how many letters."""

    __tablename__ = "operator_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    operator: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(400))
    count: Mapped[int] = mapped_column(default=0)
