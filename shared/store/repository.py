"""The store: users, albums, images, the outbox and sent notifications (SQLAlchemy).

Every change that ends an image and may settle its album happens in one transaction that first
locks the album row, so two images ending at once cannot both miss (or both claim) the settle.
Messages are written to the outbox in the same transaction as the change they announce.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Update,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session, sessionmaker

from shared.contracts import fencing, messages, topology
from shared.contracts.outgoing import Outgoing
from shared.policies import album_rules
from shared.store import album_listing, daily_quota
from shared.store import dead_letter_index as letter_index
from shared.store.album_insert import (
    images_of_the_day,
    insert_images,
    insert_upload_rows,
    outbox_row,
    upload_message,
)
from shared.store.album_listing import AlbumCursor, AlbumSummary
from shared.store.db_clock import utc_now
from shared.store.engine import add_missing_columns, make_engine
from shared.store.fb_album_claim import decide_claim
from shared.store.image_take import ENDED, Ended, Taken, take_statement
from shared.store.outbox_backoff import refusal_backoff
from shared.store.tables import (
    TERMINAL,
    Album,
    AlbumState,
    Base,
    ClaimVerdict,
    DeadLetterRecord,
    Destination,
    GraphHold,
    IdempotencyKey,
    Image,
    ImageState,
    LetterState,
    Notification,
    OutboxMessage,
    PageConnection,
    PageState,
    PostState,
    User,
    utcnow,
)
from shared.store.views import (
    AlbumPhotoLedger,
    AlbumView,
    AuditView,
    Created,
    FbAlbumClaim,
    ImageView,
    LetterGroup,
    LetterView,
    NotificationClaim,
    OutboxRetry,
    PageCredentials,
    PageView,
    PostJob,
    ReconnectMail,
    Reopened,
    Start,
    StoredImage,
    StoreFigures,
    StuckAlbum,
    StuckImage,
    Unrecorded,
    UserView,
    album_view,
    image_view,
)

log = logging.getLogger(__name__)

#: Picks the Page a new album publishes to from the user's connected Page (None: none), in the
#: album's transaction: the id (None: the single-tenant Page); raises to record nothing.
PagePick = Callable[[PageView | None], str | None]

#: Ids per `IN (...)` of a bulk read: under every backend's limit on bound parameters.
_IN_CHUNK = 500


class KeyReused(ValueError):
    """The idempotency key already created another album than the one now asked for."""

    def __init__(self, album_id: str) -> None:
        super().__init__(f"the key already created album {album_id}")
        self.album_id = album_id


class AmbiguousEmail(LookupError):
    """Users made before addresses were compared without case hold this address in several
    spellings, none of them the one given: which one is meant is the operator's to say."""

    def __init__(self, email: str, spellings: Sequence[str]) -> None:
        listed = ", ".join(spellings)
        super().__init__(f"{email} names several users ({listed}): give its exact spelling")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        sqlite = self._sqlite = self.engine.dialect.name == "sqlite"
        self._read_engine = (
            make_engine(url, read_only=True) if sqlite and ":memory:" not in url else self.engine
        )
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if sqlite else contextlib.nullcontext()
        )
        self._write_lock_free = not sqlite

    def dispose(self) -> None:
        """Close the pooled connections (a process that forks, or one done with the store)."""
        self.engine.dispose()
        self._read_engine.dispose()

    def figures(self) -> StoreFigures:
        """Counts and ages for the metrics: a handful of indexed aggregate reads, at scrape
        time only (never per message)."""
        with self._read_sessions() as s:
            now = s.scalar(select(utc_now()))
            publishing, oldest = s.execute(
                select(func.count(), func.min(Album.created_at)).where(
                    Album.state == AlbumState.PUBLISHING
                )
            ).one()
            past_lease = (
                s.scalar(
                    select(func.count())
                    .select_from(Image)
                    .where(Image.state == ImageState.UPLOADING, Image.lease_until < utc_now())
                )
                or 0
            )
            backlog, oldest_row = s.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.published_at.is_(None)
                )
            ).one()
            holds = {
                scope: _age(until, now)
                for scope, until in s.execute(
                    select(GraphHold.scope, GraphHold.until).where(GraphHold.until > utc_now())
                )
            }
        return StoreFigures(
            publishing, _age(now, oldest), past_lease, backlog, _age(now, oldest_row), holds
        )

    def create_schema(self) -> None:
        """Create missing tables; services starting together on PostgreSQL take turns."""
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(742001)"))
            Base.metadata.create_all(connection)
            if ("images", "sent_at") in add_missing_columns(connection):
                _assume_attempts_sent(connection)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Session]:
        # SQLite has one writer: threads of this process take turns here rather than in
        # sqlite's busy handler, which sleeps in growing steps (other processes still wait
        # there). PostgreSQL needs no such lock.
        with self._write_lock, self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _single(self) -> Iterator[Connection]:
        """A connection for one statement that is its own transaction: on PostgreSQL in
        autocommit (no BEGIN and COMMIT round trips around it: a statement is atomic by
        itself); on SQLite the writers' transaction, as `_tx` takes it."""
        if self._write_lock_free:
            with self.engine.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            with self._write_lock, self.engine.begin() as connection:
                yield connection

    @contextlib.contextmanager
    def _read_one(self) -> Iterator[Connection]:
        """A connection for one read statement: on PostgreSQL in autocommit (a statement reads
        one snapshot by itself, with no BEGIN and COMMIT round trips around it); on SQLite a
        reader's transaction, which never waits for the writer."""
        if self._write_lock_free:
            with self._read_engine.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            with self._read_engine.begin() as connection:
                yield connection

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        """A consistent snapshot to read from: pages polling an album never hold up a writer."""
        with self._read_sessions() as session, session.begin():
            yield session

    # -- users ---------------------------------------------------------------------------------

    def create_user(self, email: str) -> tuple[UserView, str]:
        """Create the user, or give an existing one (the address in any case) a new token;
        returns the token once."""
        with self._tx() as s:
            user = _user_by_email(s, email)
            if user is None:
                user = User(email=email, token_hash="", prefix="", session_generation=0)
                s.add(user)
                s.flush()
                user.prefix = f"users/{user.id}/"
            token = _new_token(user)
            return _user_view(user), token

    def rotate_token(self, email: str) -> tuple[UserView, str] | None:
        """A new token for an existing user (None if there is none); the old one and every
        session signed in so far stop working."""
        with self._tx() as s:
            user = _user_by_email(s, email)
            if user is None:
                return None
            token = _new_token(user)
            return _user_view(user), token

    def end_sessions(self, user_id: int) -> None:
        """Sign the user out everywhere: every session cookie issued so far is refused."""
        with self._tx() as s:
            user = s.get(User, user_id)
            if user is not None:
                _end_sessions(user)

    def set_role(self, email: str, role: str | None) -> UserView | None:
        """Give an existing user a role ("operator"; None: an end user); None if no such user."""
        with self._tx() as s:
            user = _user_by_email(s, email)
            if user is None:
                return None
            user.role = role
            return _user_view(user)

    def user_by_token(self, token: str) -> UserView | None:
        """Who sends this bearer token (every API request asks): one statement."""
        with self._read_one() as connection:
            row = connection.execute(
                select(User.id, User.email, User.prefix, User.session_generation, User.role).where(
                    User.token_hash == hash_token(token)
                )
            ).first()
        return _user_view(row) if row else None

    def user(self, user_id: int) -> UserView | None:
        with self._read() as s:
            user = s.get(User, user_id)
            return _user_view(user) if user else None

    # -- albums --------------------------------------------------------------------------------

    def create_album(
        self,
        user_id: int,
        title: str,
        notify_email: str | None,
        keys: Sequence[str],
        captions: Sequence[str | None] = (),
        description: str | None = None,
        page_id: str | None = None,
        destination: tuple[str, str | None] = (Destination.NEW_ALBUM, None),
        window: int | None = None,
        images_per_day: int | None = None,
        pick_page: PagePick | None = None,
    ) -> tuple[str, list[OutboxMessage]]:
        """Record an album, its images and the outbox messages of the first `window` images
        (None: of all), all or nothing; the others wait for their turn (`_release_turns`).
        `captions` go with `keys` by position (missing ones: no caption). `page_id`: the
        Facebook Page it publishes to (None: the single-tenant Page), or `pick_page` picks it
        from the user's connected Page, read in the same transaction (what it raises records
        nothing); `destination`: its kind and, for an existing album of the Page, that album's
        id. With `images_per_day`, raises daily_quota.QuotaExceeded (and records nothing) if
        the album does not fit in it."""
        return self._insert_album(
            user_id,
            title,
            notify_email,
            keys,
            captions=captions,
            description=description,
            page_id=page_id,
            destination=destination,
            window=window,
            images_per_day=images_per_day,
            pick_page=pick_page,
        )

    def create_album_once(
        self,
        user_id: int,
        key: str,
        fingerprint: str,
        title: str,
        notify_email: str | None,
        keys: Sequence[str],
        captions: Sequence[str | None] = (),
        description: str | None = None,
        page_id: str | None = None,
        destination: tuple[str, str | None] = (Destination.NEW_ALBUM, None),
        window: int | None = None,
        images_per_day: int | None = None,
        pick_page: PagePick | None = None,
    ) -> Created:
        """`create_album`, unless the user's idempotency `key` already created an album: then
        that album, with no messages (it has its own). `fingerprint` names the album asked
        for; raises KeyReused if the key created another one.

        The key's row is written with the album; a second request with the key (at the same
        moment, or much later) breaks the key's uniqueness, rolls back, and reads the first:
        before the quota is counted, so a repeat is answered even once the quota is spent."""
        try:
            album_id, rows = self._insert_album(
                user_id,
                title,
                notify_email,
                keys,
                (key, fingerprint),
                captions,
                description,
                page_id,
                destination,
                window,
                images_per_day,
                pick_page,
            )
            return Created(album_id, rows, replayed=False)
        except IntegrityError:
            with self._read() as s:
                taken = s.get(IdempotencyKey, (user_id, key))
            if taken is None:  # some other constraint broke: not ours to explain
                raise
        if taken.fingerprint != fingerprint:
            raise KeyReused(taken.album_id)
        return Created(taken.album_id, [], replayed=True)

    def _insert_album(
        self,
        user_id: int,
        title: str,
        notify_email: str | None,
        keys: Sequence[str],
        idempotency: tuple[str, str] | None = None,
        captions: Sequence[str | None] = (),
        description: str | None = None,
        page_id: str | None = None,
        destination: tuple[str, str | None] = (Destination.NEW_ALBUM, None),
        window: int | None = None,
        images_per_day: int | None = None,
        pick_page: PagePick | None = None,
    ) -> tuple[str, list[OutboxMessage]]:
        album_id = uuid.uuid4().hex
        kind, existing = destination
        with self._tx() as s:
            if images_per_day is not None and not self._sqlite:
                # First: the album's own row takes a share lock on the user's (its foreign
                # key), and two of those waiting to become this lock would deadlock. (SQLite
                # has one writer: its transaction is the lock.)
                _lock_user(s, user_id)
            if pick_page is not None:
                page_id = pick_page(_page_view(s.get(PageConnection, user_id)))
            # An existing album is recorded as the album's Facebook album: the uploader's
            # claim finds it there and creates nothing.
            s.execute(
                insert(Album).values(
                    id=album_id,
                    user_id=user_id,
                    title=title,
                    notify_email=notify_email,
                    description=description or None,
                    page_id=page_id,
                    destination=kind,
                    fb_album_id=existing if kind == Destination.EXISTING_ALBUM else None,
                    release_window=window,
                    image_count=len(keys),
                )
            )
            if idempotency is not None:
                # Before the images: a repeated key fails before any more work.
                s.execute(
                    insert(IdempotencyKey).values(
                        user_id=user_id,
                        key=idempotency[0],
                        album_id=album_id,
                        fingerprint=idempotency[1],
                    )
                )
            if images_per_day is not None:
                _check_daily_quota(s, user_id, album_id, images_per_day, len(keys))
            released = insert_images(s, album_id, keys, captions, window)
            return album_id, insert_upload_rows(s, album_id, released)

    def album(self, album_id: str, user_id: int | None = None) -> AlbumView | None:
        """The album, or None if it does not exist or belongs to another user."""
        if "\x00" in album_id:
            # No album id holds one, and PostgreSQL refuses it in a text parameter (an error
            # the API would answer as a store outage): an id from a URL is caller input.
            return None
        with self._read() as s:
            album = s.get(Album, album_id)
            if album is None or (user_id is not None and album.user_id != user_id):
                return None
            return album_view(album, _images(s, album_id))

    def albums(self, user_id: int, limit: int = 100) -> list[AlbumView]:
        """The user's newest albums with all their images (tests and the chaos ledger)."""
        with self._read() as s:
            rows = s.scalars(
                select(Album)
                .where(Album.user_id == user_id)
                .order_by(Album.created_at.desc())
                .limit(limit)
            ).all()
            return [album_view(album, _images(s, album.id)) for album in rows]

    def album_summaries(
        self,
        user_id: int,
        limit: int,
        after: AlbumCursor | None = None,
    ) -> tuple[list[AlbumSummary], AlbumCursor | None]:
        """A page of the user's albums, newest first, without their images (counts instead),
        after `after`; and the next page's cursor (None: no more)."""
        with self._read() as s:
            return album_listing.newest_albums(s, user_id, limit, after)

    def album_slice(
        self, album_id: str, user_id: int | None, first: int, count: int
    ) -> AlbumSummary | None:
        """The album with `count` of its images from position `first`, and its counts."""
        if "\x00" in album_id:  # as in album(): an id from a URL is caller input
            return None
        with self._read() as s:
            return album_listing.album_slice(s, album_id, user_id, first, count)

    # -- the uploader's ledger -----------------------------------------------------------------

    def image(self, image_id: int) -> ImageView | None:
        with self._read() as s:
            image = s.get(Image, image_id)
            return image_view(image) if image else None

    def images(self, image_ids: Collection[int]) -> dict[int, ImageView]:
        """The images of `image_ids` the store knows, by id (an operator's tool reads a
        dead-letter queue's worth at once)."""
        wanted = sorted(set(image_ids))
        found: dict[int, ImageView] = {}
        with self._read() as s:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                found.update(
                    (i.id, image_view(i))
                    for i in s.scalars(select(Image).where(Image.id.in_(chunk)))
                )
        return found

    def stored_image(self, image_id: int) -> StoredImage | None:
        """The album and object of an image, which its upload message must name."""
        with self._read() as s:
            row = s.execute(select(Image.album_id, Image.key).where(Image.id == image_id)).first()
            return StoredImage(row.album_id, row.key) if row else None

    def start_attempt(
        self,
        image_id: int,
        lease: timedelta = timedelta(seconds=30),
        in_flight_window: timedelta = timedelta(0),
        claim_stale: timedelta = timedelta(seconds=60),
        fence: int | None = None,
    ) -> Start:
        """Take the image for an upload attempt, unless it ended or may still be in flight.

        Another attempt is in flight while its lease is renewed (a duplicate delivery taken
        side by side). One whose uploader died, or whose outcome is in doubt (a read timeout,
        a 5xx), may still be in flight at Facebook until its request would have timed out
        (`in_flight_window` after it started): only then can a new attempt look for its photo
        and decide to send. A delivery whose `fence` (the attempt its message follows) is older
        than the image's latest attempt is a stale duplicate (`Start.stale`), unless it is a
        copy of the message that started that attempt, which recorded no outcome (`_stale`). A taken
        attempt claims the album's Facebook album too, as `claim_fb_album` would: one
        transaction instead of three, since twenty images starting at once queue for the
        store. Times are the database's. Raises LookupError for an image the store does not
        know.
        """
        with self._tx() as s:
            album_id = s.scalar(select(Image.album_id).where(Image.id == image_id))
            # The album's row lock first, then the image's: the order _end_image takes them.
            album = s.get(Album, album_id, with_for_update=True) if album_id else None
            image = s.get(Image, image_id, with_for_update=True)
            if image is None or album is None:
                raise LookupError(f"image {image_id} is not in the store")
            if image.state in TERMINAL:
                return Start(None, 0.0)
            if _stale(image, fence):
                return Start(None, 0.0, stale=True)
            now = _db_time(s)  # not before: a duplicate of an ended image costs one query less
            busy_until = _busy_until(image, now, in_flight_window)
            if busy_until > now:
                return Start(None, (busy_until - now).total_seconds())
            image.state, image.next_attempt_at, image.in_doubt = ImageState.UPLOADING, None, False
            # A copy of a message from before the image was re-opened: it holds a slot now.
            image.unreleased = None
            image.attempts += 1
            image.attempt_started_at, image.lease_until = now, now + lease
            image.attempt_fence = fence
            if image.first_attempt_at is None:  # the database's clock: hosts' clocks differ
                image.first_attempt_at = now
            claim = _claim_fb_album(album, claim_stale)
            size = (image.width, image.height) if image.width and image.height else None
            return Start(
                image.attempts,
                0.0,
                album.title,
                claim,
                caption=image.caption or "",
                album_description=album.description or "",
                album_created_at=album.created_at,
                first_attempt_at=image.first_attempt_at,
                size=size,
                key=image.key,
            )

    def take_image_unless_ended(
        self,
        image_id: int,
        album_id: str,
        key: str,
        lease: timedelta,
        in_flight_window: timedelta,
        fence: int | None = None,
        held_scopes: Collection[str] = (),
    ) -> Taken | Ended | None:
        """`start_attempt`'s usual case in one statement (`image_take`): the attempt taken;
        else whether the image has ended (`Ended`: the message names its stored album and
        object), so that a redelivered or replayed message of an uploaded image is answered by
        this one transaction (on SQLite the read shares the take's, on PostgreSQL it is a
        second autocommit statement, on a miss only), not the long way's four (P7's cost per
        image); else None: anything else needs `start_attempt`'s decision (nothing was changed
        then). The album's Facebook album is not claimed here."""
        take = take_statement(image_id, album_id, key, lease, in_flight_window, fence, held_scopes)
        with self._single() as connection:
            taken = _taken(connection, *take)
            if taken is not None:
                return taken
            state = connection.execute(
                ENDED, {"image_id": image_id, "album_id": album_id, "key": key}
            ).scalar()
            return Ended(state) if state is not None else None

    def album_facts(self, album_id: str) -> Start:
        """What the album's Facebook album is created with, for an attempt taken by
        `take_image_unless_ended` that must create it: a Start carrying only the album's fields."""
        with self._read() as s:
            album = s.get(Album, album_id)
            if album is None:
                raise LookupError(f"album {album_id} is not in the store")
            return Start(
                None,
                0.0,
                album.title,
                album_description=album.description or "",
                album_created_at=album.created_at,
            )

    def record_sending(self, image_id: int, size: tuple[int, int] | None) -> None:
        """The attempt is about to send (its photo may land from now on), with the source's
        pixel size when it was just read (it recognises the photo later)."""
        values: dict[str, Any] = {"sent_at": utc_now()}  # the clock attempts start by
        if size is not None:
            values.update(width=size[0], height=size[1])
        with self._single() as connection:
            connection.execute(update(Image).where(Image.id == image_id).values(**values))

    def release_attempt(self, image_id: int) -> None:
        """The attempt ends having sent nothing (it waits to reconcile): not in flight."""
        with self._tx() as s:
            s.execute(
                update(Image)
                .where(Image.id == image_id, Image.state == ImageState.UPLOADING)
                .values(
                    state=ImageState.RETRYING,
                    lease_until=None,
                    attempt_started_at=None,
                    in_doubt=False,
                )
            )

    def album_photo_ledger(self, album_id: str, in_flight_window: timedelta) -> AlbumPhotoLedger:
        """The photo ids recorded in the album's Facebook album, and the images that began to
        send a photo there and have none recorded (with how long each one's attempt may still
        land: `in_flight_window` after it started). An image attempted that never reached the
        send is not among them: nothing of it can be on Facebook. The images are those of
        every album of ours that publishes to the same Facebook album (several may pick one
        existing album of the Page): another album's photo there is never this one's."""
        with self._read() as s:
            now = _db_time(s)
            # One statement: the album's images, and those of the albums sharing its Facebook
            # album (none while it has none: NULL equals nothing).
            its_fb_album = select(Album.fb_album_id).where(Album.id == album_id).scalar_subquery()
            sharing = select(Album.id).where(Album.fb_album_id == its_fb_album)
            ours = or_(Image.album_id == album_id, Image.album_id.in_(sharing))
            images = list(
                s.scalars(select(Image).where(ours).order_by(Image.album_id, Image.position))
            )
        claimed = [i.photo_id for i in images if i.photo_id]
        unrecorded = [
            Unrecorded(
                i.id,
                i.caption or "",
                (i.width, i.height) if i.width and i.height else None,
                i.first_attempt_at,
                _in_flight_s(i, now, in_flight_window),
            )
            for i in images
            if not i.photo_id and i.first_attempt_at is not None and i.sent_at is not None
        ]
        return AlbumPhotoLedger(claimed, unrecorded)

    def fb_albums_recorded(self, fb_album_ids: Collection[str]) -> set[str]:
        """Which of these Facebook albums are recorded for one of our albums already."""
        if not fb_album_ids:
            return set()
        with self._read() as s:
            recorded = s.scalars(
                select(Album.fb_album_id).where(Album.fb_album_id.in_(list(fb_album_ids)))
            ).all()
        return {fb_album_id for fb_album_id in recorded if fb_album_id}

    def requeue_lost(
        self,
        quiet_for: timedelta,
        in_flight_window: timedelta = timedelta(0),
        limit: int = 500,
        queue_empty: bool = True,
    ) -> list[OutboxMessage]:
        """A new upload message for each image whose message is gone (see
        `services/uploader/sweeper.py` for the rule). `queue_empty`: the work queue holds
        nothing ready, which counts only while no attempt starts at all. Each one found is
        touched, so that it is not sent again before it is quiet again. An image waiting for
        its album's turn has no message to lose; but an album whose window has room while
        images wait (nothing should leave it so) has them released here."""
        with self._tx() as s:
            now = _db_time(s)
            images = list(
                s.scalars(
                    select(Image)
                    .where(_lost(s, now, quiet_for, in_flight_window, queue_empty))
                    .order_by(Image.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            for image in images:
                if image.state == ImageState.UPLOADING:  # its attempt died and can no longer land
                    image.state, image.lease_until, image.in_doubt = ImageState.QUEUED, None, False
                _resend(image, now)
            rows = [_upload_row(i) for i in images]
            s.add_all(rows)
            return rows + _release_stalled_turns(s, limit)

    def renew_leases(self, attempts: Mapping[int, int], lease: timedelta) -> None:
        """Renew the lease of each image (id -> attempt number) still in that attempt."""
        if attempts:
            with self._tx() as s:
                now = _db_time(s)
                for image_id, attempt in attempts.items():
                    s.execute(
                        update(Image)
                        .where(
                            Image.id == image_id,
                            Image.state == ImageState.UPLOADING,
                            Image.attempts == attempt,
                        )
                        .values(lease_until=now + lease)
                    )

    def record_retrying(
        self,
        image_id: int,
        error: str,
        code: int | None,
        retry_in: timedelta | datetime,
        attempt: int | None = None,
        in_doubt: bool = False,
        waiting_only: bool = False,
        in_flight_window: timedelta | None = None,
    ) -> timedelta:
        """The attempt failed and its copy waits `retry_in` (a delay from the database's clock,
        which the uploader passes; or a time, naive UTC). `in_doubt`: its request may still
        reach Facebook, so the attempt keeps its in-flight window (see `start_attempt`), and
        with `in_flight_window` the time shown is when that window ends, if later: the next
        attempt cannot start before (`_busy_until`). With `attempt`, only if the image is
        still in that attempt; with `waiting_only` (a wait before any attempt was taken), only
        if no attempt is uploading it. Returns the wait recorded, from now."""
        waiting = (Image.state != ImageState.UPLOADING,) if waiting_only else ()
        with self._tx() as s:
            now = _db_time(s)
            at = retry_in if isinstance(retry_in, datetime) else now + retry_in
            image = s.get(Image, image_id) if in_doubt and in_flight_window else None
            if image is not None and in_flight_window is not None:
                at = max(at, _busy_until(image, now, in_flight_window))
            s.execute(
                update(Image)
                .where(
                    Image.id == image_id,
                    Image.state.not_in(TERMINAL),
                    *_in_attempt(attempt),
                    *waiting,
                )
                .values(
                    state=ImageState.RETRYING,
                    error=error,
                    error_code=code,
                    next_attempt_at=at,
                    queued_at=at,
                    lease_until=None,
                    in_doubt=in_doubt,
                )
            )
            return at - now

    def record_uploaded(
        self, image_id: int, photo_id: str, attempt: int | None = None, album_id: str | None = None
    ) -> list[OutboxMessage]:
        """Record the photo id; returns the album's settled event if this image ended it.
        `album_id`: the image's album, when the caller knows it (one read less; an image of
        another album is left as it is).

        Any attempt's photo is recorded, a stalled one's too (`attempt` older than the
        image's): the photo is on Facebook, losing its id would lose it. A second photo for
        an image that already has one is logged loudly: it is a duplicate on Facebook.
        """
        ended, rows = self._end_image(
            image_id,
            album_id=album_id,
            state=ImageState.UPLOADED,
            photo_id=photo_id,
            error=None,
            error_code=None,
        )
        if not ended:
            image = self.image(image_id)
            if image is not None and image.photo_id != photo_id:
                log.error(
                    "image %s: attempt %s sent photo %s, but the image is already %s "
                    "(photo %s): a duplicate photo on Facebook, to remove by hand",
                    image_id,
                    attempt,
                    photo_id,
                    image.state,
                    image.photo_id,
                )
        return rows

    def record_failed(
        self,
        image_id: int,
        reason: str,
        code: int | None,
        dead_letter: Outgoing | None = None,
        stop_album: bool = False,
        attempt: int | None = None,
    ) -> list[OutboxMessage]:
        """Record the failure and, in the same transaction, its dead letter in the outbox.

        With `stop_album` (the page's authorisation is gone), the album's images that wait to
        be tried fail too, with the same reason, instead of each hammering the API in turn.
        With `attempt`, only if the image is still in that attempt (a stalled one is not).
        """
        extra = [dead_letter] if dead_letter is not None else []
        return self._end_image(
            image_id,
            extra,
            stop_album,
            _in_attempt(attempt),
            state=ImageState.FAILED,
            photo_id=None,
            error=reason,
            error_code=code,
        )[1]

    def _end_image(
        self,
        image_id: int,
        extra: Sequence[Outgoing] = (),
        stop_album: bool = False,
        only: Sequence[ColumnElement[bool]] = (),
        album_id: str | None = None,
        **values: Any,
    ) -> tuple[bool, list[OutboxMessage]]:
        """Whether the image ended now, and the outbox rows written with it."""
        with self._tx() as s:
            if album_id is None:
                album_id = s.scalar(select(Image.album_id).where(Image.id == image_id))
                if album_id is None:
                    return False, []
            album = s.get(Album, album_id, with_for_update=True)
            result = s.execute(
                update(Image)
                .where(
                    Image.id == image_id,
                    Image.album_id == album_id,
                    Image.state.not_in(TERMINAL),
                    *only,
                )
                .values(next_attempt_at=None, lease_until=None, in_doubt=False, **values)
            )
            ended = cast(CursorResult[Any], result).rowcount
            if not ended or album is None:
                return False, []
            if stop_album:
                s.execute(
                    update(Image)
                    .where(
                        Image.album_id == album_id,
                        Image.state.in_(
                            (ImageState.QUEUED, ImageState.RETRYING, ImageState.PAUSED)
                        ),
                    )
                    .values(
                        state=ImageState.FAILED,
                        next_attempt_at=None,
                        error=f"not sent: {values['error']}",
                        error_code=values["error_code"],
                    )
                )
            rows = [outbox_row(message) for message in extra]
            s.add_all(rows)
            s.add_all(letter_index.records(extra))  # the desk's index, with the letter
            # One read of the album's images serves its turns and its settle: the album's row
            # lock keeps the states it reads (a start that takes it holds a turn already).
            standing = _standing(s, album.id)
            rows += _release_turns(s, album, standing)
            return True, rows + _settle_if_ended(s, album, [state for state, _ in standing])

    def reopen_failed(
        self, album_id: str, image_ids: Collection[int] | None = None
    ) -> list[OutboxMessage]:
        """Queue the album's failed images (or those of `image_ids`) again: the album goes back
        to publishing, and one new upload message per image goes to the outbox, as its window
        lets them: the others wait for their turn, in the album's order."""
        return self.retry_failed(album_id, image_ids).rows

    def retry_failed(self, album_id: str, image_ids: Collection[int] | None = None) -> Reopened:
        """`reopen_failed`, saying also how many images it re-opened (a retry's answer: some
        may wait for their turn, so the messages written are fewer)."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if album is None:
                return Reopened(0, [])
            now = _db_time(s)
            images = [
                i
                for i in _images(s, album_id)
                if i.state == ImageState.FAILED and (image_ids is None or i.id in image_ids)
            ]
            for image in images:
                image.state, image.error, image.error_code = ImageState.QUEUED, None, None
                image.queued_at = now
                image.unreleased = True if album.release_window is not None else None
            if images:
                album.state, album.settled_at = AlbumState.PUBLISHING, None
            s.flush()
            rows = [_upload_row(i) for i in images if not i.unreleased]
            s.add_all(rows)
            return Reopened(len(images), rows + _release_turns(s, album))

    def resend_unfinished(self, album_id: str, image_ids: Collection[int]) -> list[OutboxMessage]:
        """A new upload message for each of `image_ids` that has not ended (queued, retrying,
        or stuck uploading after its message was dead-lettered): what a replay of its dead
        letter sends, since there is nothing to re-open. The attempt starts as any other: an
        attempt still in flight makes it wait, and it reads the album back first. An image
        waiting for its album's turn gets its message when its turn comes."""
        with self._tx() as s:
            now = _db_time(s)
            images = list(
                s.scalars(
                    select(Image)
                    .where(
                        Image.album_id == album_id,
                        Image.id.in_(image_ids),
                        Image.state.not_in(TERMINAL),
                        Image.unreleased.is_not(True),
                    )
                    .order_by(Image.id)
                    .with_for_update()
                )
            )
            for image in images:
                _resend(image, now)
            rows = [_upload_row(i) for i in images]
            s.add_all(rows)
            return rows

    def claim_fb_album(self, album_id: str, stale_after: timedelta) -> FbAlbumClaim:
        """Who creates the album on Facebook: the caller, unless it exists or another is on it."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            return (
                _claim_fb_album(album, stale_after) if album else FbAlbumClaim(None, False, False)
            )

    def release_fb_album_claim(self, album_id: str, uncertain: bool = False) -> None:
        """The claimer's create failed. Surely not made: the next claimer creates at once.
        `uncertain` (no answer: it may have been made): the claim is kept, with its time, so
        that the album is looked for before another is created, and created only once the
        claim lapsed (`fb_album_claim.decide_claim`)."""
        values: dict[str, Any] = (
            {"fb_album_create_uncertain": True}
            if uncertain
            else {"fb_album_claimed_at": None, "fb_album_create_uncertain": None}
        )
        with self._tx() as s:
            s.execute(
                update(Album)
                .where(Album.id == album_id, Album.fb_album_id.is_(None))
                .values(**values)
            )

    def switch_to_post(self, album_id: str, note: str) -> str | None:
        """Facebook refused for good to create the album's album: it goes out as one
        multi-photo post instead, and `note` says why (the page and the email show it). No
        photo was sent before (they all wait for the album), so none is sent twice. Returns
        the Facebook album another worker recorded first, if one did: the album keeps it."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if album is None or album.fb_album_id or album.destination == Destination.POST:
                return album.fb_album_id if album is not None else None
            album.destination, album.destination_note = Destination.POST, note
            album.fb_album_claimed_at = album.fb_album_create_uncertain = None
            return None

    def start_post(self, album_id: str, settle_seq: int, stale_after: timedelta) -> PostJob:
        """Take the album's multi-photo post for the settle `settle_seq`, unless it is done,
        or another worker holds it and a post sent under that claim may still land."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if album is None:
                raise LookupError(f"album {album_id} is not in the store")
            if album.settle_seq != settle_seq or album.post_state != PostState.PENDING:
                return PostJob(False, state=album.post_state)
            now = s.scalar(select(utc_now()))
            assert now is not None
            claimed = album.post_claimed_at
            if claimed is not None and now - claimed < stale_after:
                return PostJob(
                    False,
                    state=PostState.PENDING,
                    busy_for=(claimed + stale_after - now).total_seconds(),
                )
            album.post_claimed_at = now
            return PostJob(
                True,
                album.title,
                tuple(_to_post(s, album)),
                taken_over=claimed is not None,
                description=album.description or "",
            )

    def reopen_post(self, album_id: str) -> list[OutboxMessage]:
        """Try a failed multi-photo post again (its dead letter replayed): a new settle, whose
        post request goes out through the outbox; its email follows the post."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if album is None or album.post_state != PostState.FAILED or not _to_post(s, album):
                return []
            album.settle_seq += 1
            album.post_state, album.post_error = PostState.PENDING, None
            album.post_claimed_at = None
            album.state, album.settled_at = AlbumState.PUBLISHING, None
            row = _outbox_row(
                messages.FeedPostRequested(album_id=album.id, settle_seq=album.settle_seq),
                topology.FEED_POSTS,
            )
            s.add(row)
            s.flush()
            return [row]

    def release_post_claim(self, album_id: str) -> None:
        """The post surely did not land (Facebook refused it, or nothing was sent): the next
        attempt need not wait for the claim to lapse."""
        with self._tx() as s:
            s.execute(
                update(Album)
                .where(Album.id == album_id, Album.post_state == PostState.PENDING)
                .values(post_claimed_at=None)
            )

    def record_posted(self, album_id: str, settle_seq: int, post_id: str) -> list[OutboxMessage]:
        """The post is on Facebook: its id, and the album's settled event (its email)."""
        return self._end_post(
            album_id, settle_seq, PostState.POSTED, fb_post_id=post_id, post_error=None
        )

    def record_post_failed(
        self, album_id: str, settle_seq: int, reason: str, dead_letter: Outgoing | None = None
    ) -> list[OutboxMessage]:
        """The post failed for good: why, its dead letter and the album's settled event."""
        return self._end_post(
            album_id, settle_seq, PostState.FAILED, dead_letter, post_error=reason
        )

    def _end_post(
        self,
        album_id: str,
        settle_seq: int,
        state: str,
        dead_letter: Outgoing | None = None,
        **values: Any,
    ) -> list[OutboxMessage]:
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if (
                album is None
                or album.settle_seq != settle_seq
                or album.post_state != PostState.PENDING
            ):
                return []
            if state == PostState.POSTED:
                album.posted_photos = [*(album.posted_photos or []), *_to_post(s, album)]
            album.post_state, album.post_claimed_at = state, None
            album.state = album_rules.settled_state(
                [
                    album_rules.ImageEnd(i.id, i.key, i.state, i.photo_id, i.error)
                    for i in _images(s, album.id)
                ]
            )
            if state == PostState.FAILED:  # its photos are on Facebook, but shown nowhere
                album.state = AlbumState.DONE_WITH_FAILURES
            album.settled_at = utcnow()
            for name, value in values.items():
                setattr(album, name, value)
            rows = [outbox_row(dead_letter)] if dead_letter is not None else []
            if dead_letter is not None:
                s.add_all(letter_index.records([dead_letter]))
            rows.append(_settled_row(s, album))
            s.add_all(rows)
            s.flush()
            return rows

    def set_fb_album(self, album_id: str, fb_album_id: str) -> str:
        """Record the album's Facebook album, unless one is recorded already: the first writer
        wins, so that a late create cannot move the album's later photos elsewhere. Returns
        the recorded one (the caller's, or the one it must adopt)."""
        with self._tx() as s:
            album = s.get(Album, album_id, with_for_update=True)
            if album is None:
                raise LookupError(f"album {album_id} is not in the store")
            if not album.fb_album_id:
                album.fb_album_id = fb_album_id
                album.fb_album_create_uncertain = None
            return album.fb_album_id

    # -- the outbox ----------------------------------------------------------------------------

    def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            with self._single() as connection:
                connection.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(published_at=utc_now())
                )

    def claim_unpublished(
        self,
        older_than: timedelta,
        lease: timedelta,
        limit: int = 500,
        exchanges: Collection[str] | None = None,
    ) -> list[OutboxMessage]:
        """Lease unpublished messages nobody published in time, for the relay to publish:
        older than `older_than`, not leased, and not waiting out a refusal's backoff. Timed by
        the database's clock: a lease taken on one host ends on time for the others."""
        with self._tx() as s:
            now = self._now(s)
            rows = list(
                s.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.published_at.is_(None),
                        OutboxMessage.created_at < now - older_than,
                        (OutboxMessage.claimed_until.is_(None))
                        | (OutboxMessage.claimed_until < now),
                        (OutboxMessage.next_attempt_at.is_(None))
                        | (OutboxMessage.next_attempt_at <= now),
                        OutboxMessage.exchange.in_(exchanges) if exchanges is not None else true(),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                row.claimed_until = now + lease
            return rows

    def release_outbox_claims(self, ids: Sequence[int]) -> None:
        """Hand claimed messages the relay could not publish back now, not when the lease ends."""
        if ids:
            with self._tx() as s:
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
                    .values(claimed_until=None)
                )

    def record_refused(self, errors: Mapping[int, str]) -> list[OutboxRetry]:
        """Count a refusal of each row (id: what the broker said), keep the error and set when
        the relay may try again (`refusal_backoff`, from the database's clock); any claim on
        the row ends. A row published meanwhile is left as it is."""
        if not errors:
            return []
        with self._tx() as s:
            now = self._now(s)
            rows = s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.id.in_(list(errors)), OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .with_for_update()
            )
            retries = []
            for row in rows:
                row.attempts = (row.attempts or 0) + 1
                row.next_attempt_at = now + refusal_backoff(row.attempts)
                row.last_error = errors[row.id]
                row.claimed_until = None
                retries.append(
                    OutboxRetry(
                        row.id,
                        row.message_id,
                        row.exchange,
                        row.routing_key,
                        row.attempts,
                        row.next_attempt_at,
                        row.last_error,
                    )
                )
            return retries

    def unpublished_count(self) -> int:
        with self._read() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                )
                or 0
            )

    # -- the notifier's ledger -----------------------------------------------------------------

    def claim_notification(
        self, album_id: str, settle_seq: int, lease: timedelta
    ) -> NotificationClaim:
        """SEND (with a new claim id) if the caller should mail this settle now; SENT; or BUSY
        while another sender's claim, taken less than `lease` ago, holds.

        A claim nobody confirmed within `lease` (its sender died) can be taken again; the
        database's clock times it, so notifiers on hosts whose clocks differ agree.
        """
        with self._tx() as s:
            now = self._now(s)
            row = s.get(Notification, (album_id, settle_seq), with_for_update=True)
            claim_id = uuid.uuid4().hex
            if row is None:
                s.add(
                    Notification(
                        album_id=album_id, settle_seq=settle_seq, claimed_at=now, claim_id=claim_id
                    )
                )
                return NotificationClaim(ClaimVerdict.SEND, claim_id)
            if row.sent_at is not None:
                return NotificationClaim(ClaimVerdict.SENT)
            if row.claimed_at > now - lease:
                return NotificationClaim(ClaimVerdict.BUSY)
            row.claimed_at, row.claim_id = now, claim_id
            return NotificationClaim(ClaimVerdict.SEND, claim_id)

    def mark_notification_sent(self, album_id: str, settle_seq: int, claim_id: str) -> bool:
        """Record the mail sent under `claim_id`; False (nothing recorded) if that claim is no
        longer the current one: another sender took it over and answers for the email now.
        Marking twice is harmless (a retry after a commit whose answer was lost)."""
        with self._tx() as s:
            row = s.get(Notification, (album_id, settle_seq), with_for_update=True)
            if row is None or row.claim_id != claim_id:
                return False
            if row.sent_at is None:
                row.sent_at = self._now(s)
            return True

    def release_notification(self, album_id: str, settle_seq: int, claim_id: str) -> bool:
        """Give up claim `claim_id` (its mail was not sent), so the next attempt need not wait
        for it to lapse; False if that claim is no longer the current one."""
        with self._tx() as s:
            result = s.execute(
                delete(Notification).where(
                    Notification.album_id == album_id,
                    Notification.settle_seq == settle_seq,
                    Notification.claim_id == claim_id,
                    Notification.sent_at.is_(None),
                )
            )
            return cast(CursorResult[Any], result).rowcount == 1

    # -- Facebook Pages (shared/config/token_cipher.py seals the tokens) ---------------------------

    def connect_page(
        self, user_id: int, page_id: str, page_name: str, token_sealed: bytes
    ) -> list[OutboxMessage]:
        """Connect the user's Page (replacing any other), and queue again the images of the
        user's albums for that Page that were paused waiting for it: one upload message each,
        and a post request for each of their multi-photo posts paused so, in the same
        transaction."""
        with self._tx() as s:
            connection = s.get(PageConnection, user_id, with_for_update=True)
            if connection is None:
                connection = PageConnection(user_id=user_id)
                s.add(connection)
            connection.page_id, connection.page_name = page_id, page_name
            connection.token_sealed, connection.state = token_sealed, PageState.CONNECTED
            connection.connected_at, connection.reconnect_asked_at = utcnow(), None
            connection.reconnect_mailed_at = None
            paused = list(
                s.scalars(
                    select(Image)
                    .join(Album, Album.id == Image.album_id)
                    .where(
                        Album.user_id == user_id,
                        Album.page_id == page_id,
                        Image.state == ImageState.PAUSED,
                    )
                    .order_by(Image.id)
                    .with_for_update()
                )
            )
            for image in paused:
                image.state, image.error, image.error_code = ImageState.QUEUED, None, None
            rows = [_upload_row(i) for i in paused]
            rows += _resume_posts(s, user_id, page_id)
            s.add_all(rows)
            return rows

    def disconnect_page(self, user_id: int) -> bool:
        """Forget the user's Page and its token; False if none was connected."""
        with self._tx() as s:
            result = s.execute(delete(PageConnection).where(PageConnection.user_id == user_id))
            return bool(cast(CursorResult[Any], result).rowcount)

    def page(self, user_id: int) -> PageView | None:
        with self._read() as s:
            return _page_view(s.get(PageConnection, user_id))

    def album_page(self, album_id: str) -> tuple[int, str | None] | None:
        """The album's owner and the Page it publishes to (None: the single-tenant Page)."""
        with self._read() as s:
            row = s.execute(
                select(Album.user_id, Album.page_id).where(Album.id == album_id)
            ).first()
            return (row[0], row[1]) if row else None

    def page_credentials(self, user_id: int, page_id: str) -> PageCredentials | None:
        """The user's connection to this Page, its token still sealed; None if the user's
        connection is to another Page or there is none."""
        with self._read() as s:
            c = s.get(PageConnection, user_id)
            if c is None or c.page_id != page_id:
                return None
            return PageCredentials(c.user_id, c.page_id, c.state, c.token_sealed)

    def set_page_state(self, user_id: int, page_id: str, state: str) -> bool:
        """Mark the user's connection to this Page; True the first time it enters `state`
        (the owner is asked to reconnect once, not once per image)."""
        with self._tx() as s:
            result = s.execute(
                update(PageConnection)
                .where(
                    PageConnection.user_id == user_id,
                    PageConnection.page_id == page_id,
                    PageConnection.state != state,
                )
                .values(state=state, reconnect_asked_at=utcnow())
            )
            return bool(cast(CursorResult[Any], result).rowcount)

    def claim_reconnect_mails(self) -> list[ReconnectMail]:
        """The owners of Pages that stopped (190, 368) and were not mailed since: each is
        marked mailed as it is handed out, so one notifier mails them once."""
        with self._tx() as s:
            rows = list(
                s.execute(
                    select(PageConnection, User.email)
                    .join(User, User.id == PageConnection.user_id)
                    .where(
                        PageConnection.state.in_((PageState.NEEDS_RECONNECT, PageState.BLOCKED)),
                        (PageConnection.reconnect_mailed_at.is_(None))
                        | (PageConnection.reconnect_mailed_at < PageConnection.reconnect_asked_at),
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            now = utcnow()
            for connection, _ in rows:
                connection.reconnect_mailed_at = now
            return [ReconnectMail(c.user_id, email, c.page_name, c.state) for c, email in rows]

    def release_reconnect_mail(self, user_id: int) -> None:
        """The mail could not be sent: the next round tries again."""
        with self._tx() as s:
            s.execute(
                update(PageConnection)
                .where(PageConnection.user_id == user_id)
                .values(reconnect_mailed_at=None)
            )

    def pause_image(
        self, image_id: int, reason: str, code: int | None, give_back_attempt: bool
    ) -> None:
        """The image waits for its Page to be reconnected; an attempt that was taken and
        refused for the Page's sake (not the image's) is given back."""
        with self._tx() as s:
            image = s.get(Image, image_id, with_for_update=True)
            if image is not None:
                _pause(image, reason, code, give_back_attempt)

    def pause_for_page(
        self,
        image_id: int,
        reason: str,
        code: int | None,
        give_back_attempt: bool,
        refused: bytes | None = None,
    ) -> bool:
        """`pause_image`, decided with the album's Page connection locked, as `connect_page`
        locks it before it queues the paused images again: False, and the image not paused,
        if the Page is connected by now with a token other than `refused` (the owner
        reconnected after the image found the Page waiting, or while the request Facebook
        refused was on its way); its attempt, if given back, is then ended as not sent. With
        `refused` (sealed, as stored) still the Page's token, the connection is marked
        `needs_reconnect` first (once: its owner is mailed once)."""
        with self._tx() as s:
            if not _page_waits(s, image_id, refused):
                if give_back_attempt:
                    _hand_back(s.get(Image, image_id, with_for_update=True))
                return False
            image = s.get(Image, image_id, with_for_update=True)
            if image is not None:
                _pause(image, reason, code, give_back_attempt)
            return True

    def pause_post(
        self, album_id: str, settle_seq: int, reason: str, refused: bytes | None = None
    ) -> bool:
        """The album's multi-photo post waits for its Page to be reconnected, its claim
        released (it surely did not land), `reason` shown as its error; `connect_page`
        requests it again. As `pause_for_page`: decided with the Page connection locked
        (before the album, in `connect_page`'s order), False and nothing paused if the Page is
        connected by now with a token other than `refused`; with `refused` still the Page's
        token, the connection is marked `needs_reconnect` (its owner is mailed once). True
        too if the post is no longer this settle's to pause (nothing to do)."""
        owner = self.album_page(album_id)
        if owner is None:
            return True
        with self._tx() as s:
            if not _owner_page_waits(s, owner[0], owner[1], refused):
                s.execute(
                    update(Album)
                    .where(Album.id == album_id, Album.post_state == PostState.PENDING)
                    .values(post_claimed_at=None)
                )
                return False
            album = s.get(Album, album_id, with_for_update=True)
            if (
                album is not None
                and album.settle_seq == settle_seq
                and album.post_state == PostState.PENDING
            ):
                album.post_state, album.post_claimed_at, album.post_error = (
                    PostState.PAUSED,
                    None,
                    reason,
                )
            return True

    # -- Graph holds (throttling shared by every uploader process) -----------------------------

    def hold_graph(self, scope: str, seconds: float) -> None:
        """Send nothing to `scope` for `seconds` from now (a longer hold already there stays)."""
        try:
            self._hold_graph(scope, seconds)
        except IntegrityError:  # another process added the scope's row first: update it
            self._hold_graph(scope, seconds)

    def _hold_graph(self, scope: str, seconds: float) -> None:
        with self._tx() as s:
            until = self._now(s) + timedelta(seconds=seconds)
            hold = s.get(GraphHold, scope, with_for_update=True)
            if hold is None:
                s.add(GraphHold(scope=scope, until=until))
            elif hold.until < until:
                hold.until = until

    def graph_held_for(self, scopes: Collection[str]) -> float:
        """Seconds until every one of `scopes` may be sent to again (0: none is held)."""
        with self._read() as s:
            now = self._now(s)
            until = s.scalar(select(func.max(GraphHold.until)).where(GraphHold.scope.in_(scopes)))
        return max(0.0, (until - now).total_seconds()) if until is not None else 0.0

    # -- the dead-letter desk ------------------------------------------------------------------

    def index_dead_letters(self, letters: Sequence[Outgoing], poison: bool = False) -> None:
        """Index letters the runtime dead-lettered without a store transaction (poison, a
        failed hook); one already indexed is left as it is."""
        with self._tx() as s:
            for record in letter_index.records(letters, poison):
                if s.get(DeadLetterRecord, record.message_id) is None:
                    s.add(record)

    def letter_groups(self, offset: int = 0, limit: int = 50) -> list[LetterGroup]:
        with self._read() as s:
            return letter_index.groups(s, offset, limit)

    def group_letters(
        self, kind: str, code: int | None, offset: int = 0, limit: int = 50
    ) -> list[LetterView]:
        with self._read() as s:
            return letter_index.letters(s, kind, code, offset, limit)

    def dead_letter(self, message_id: str) -> LetterView | None:
        with self._read() as s:
            row = s.get(DeadLetterRecord, message_id)
            return letter_index.view(row) if row is not None else None

    def waiting_letters(
        self,
        message_ids: Collection[str] = (),
        kind: str | None = None,
        code: int | None = None,
        album_id: str | None = None,
        limit: int = 500,
    ) -> list[LetterView]:
        """Waiting letters by id, or (without ids) up to `limit` of a group or an album."""
        with self._read() as s:
            ids = list(message_ids) or letter_index.waiting_ids(s, kind, code, album_id, limit)
            rows = s.scalars(
                select(DeadLetterRecord)
                .where(
                    DeadLetterRecord.message_id.in_(ids[:limit]),
                    DeadLetterRecord.state == LetterState.WAITING,
                )
                .order_by(DeadLetterRecord.dead_at)
            )
            return [letter_index.view(r) for r in rows]

    def settle_letters(
        self, message_ids: Sequence[str], state: str, operator: str, action: str, target: str
    ) -> int:
        """Mark the waiting ones of `message_ids` replayed or purged by `operator`, and audit
        the action, in one transaction; returns how many were marked."""
        with self._tx() as s:
            now = _db_time(s)
            marked = letter_index.mark(s, message_ids, state, operator, now)
            letter_index.audit(s, operator, action, target, len(marked), now)
            return len(marked)

    def audit_log(self, offset: int = 0, limit: int = 50) -> list[AuditView]:
        with self._read() as s:
            return letter_index.audit_log(s, offset, limit)

    def letter_states(self, message_ids: Collection[str]) -> dict[str, str]:
        """The index's state of each of `message_ids` it holds (waiting, replayed, purged)."""
        with self._read() as s:
            rows = s.execute(
                select(DeadLetterRecord.message_id, DeadLetterRecord.state).where(
                    DeadLetterRecord.message_id.in_(list(message_ids))
                )
            )
            return {row[0]: row[1] for row in rows}

    def has_undrained_letters(self) -> bool:
        """Whether a replayed or purged letter's queue copy is still to be removed."""
        with self._read() as s:
            return (
                s.scalar(
                    select(DeadLetterRecord.message_id)
                    .where(
                        DeadLetterRecord.state != LetterState.WAITING,
                        DeadLetterRecord.drained_at.is_(None),
                    )
                    .limit(1)
                )
                is not None
            )

    def mark_drained(self, message_ids: Collection[str]) -> None:
        with self._tx() as s:
            s.execute(
                update(DeadLetterRecord)
                .where(DeadLetterRecord.message_id.in_(list(message_ids)))
                .values(drained_at=_db_time(s))
            )

    def stuck_albums(self, grace: timedelta, offset: int = 0, limit: int = 50) -> list[StuckAlbum]:
        """Albums publishing past their expected end: the latest time one of their unfinished
        images was due (its lease for one uploading, else when its message was queued or its
        retry was set for), plus `grace`. Paused images wait for their owner: not counted."""
        due = case((Image.state == ImageState.UPLOADING, Image.lease_until), else_=Image.queued_at)
        with self._read() as s:
            now = _db_time(s)
            late = list(
                s.execute(
                    select(Image.album_id, func.max(due))
                    .join(Album, Album.id == Image.album_id)
                    .where(
                        Album.state == AlbumState.PUBLISHING,
                        Image.state.not_in((*TERMINAL, ImageState.PAUSED)),
                    )
                    .group_by(Image.album_id)
                    .having(func.max(due) < now - grace)
                    .order_by(func.max(due))
                    .offset(offset)
                    .limit(limit)
                )
            )
            return [_stuck(s, album_id, latest + grace) for album_id, latest in late]

    def _now(self, s: Session) -> datetime:
        """The database's clock: the one `db_clock.utc_now` every other comparison reads
        (on PostgreSQL the statement's time, not the transaction's start)."""
        return _db_time(s)


def _lock_user(s: Session, user_id: int) -> None:
    """Lock the user's row (PostgreSQL; SQLite has one writer anyway) till the commit, so that
    two albums posted at once are counted one after the other, not both against one total."""
    s.execute(select(User.id).where(User.id == user_id).with_for_update())


def _check_daily_quota(s: Session, user_id: int, album_id: str, quota: int, requested: int) -> None:
    """Raise QuotaExceeded unless album `album_id`'s images fit beside those of the user's other
    albums of the last 24 hours (under `_lock_user`); the album being inserted has no images
    yet. The day's albums one by one (to tell when it fits) only for an album that does not."""
    now = _db_time(s)
    if images_of_the_day(s, user_id, now, besides=album_id) + requested <= quota:
        return
    recent = s.execute(
        select(Album.created_at, func.count(Image.id))
        .join(Image, Image.album_id == Album.id)
        .where(Album.user_id == user_id, Album.created_at > now - daily_quota.WINDOW)
        .group_by(Album.id, Album.created_at)
        .order_by(Album.created_at)
    ).all()
    daily_quota.check(
        [daily_quota.Recent(created_at, count) for created_at, count in recent],
        quota,
        requested,
        now,
    )


def _outbox_row(message: messages.AnyMessage, queue: topology.WorkQueue) -> OutboxMessage:
    return outbox_row(Outgoing(topology.WORK_EXCHANGE, queue.routing_key, messages.encode(message)))


class _Released(Protocol):
    """What an upload message is made of: an image, or the row its release returned."""

    @property
    def id(self) -> int: ...
    @property
    def album_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def attempts(self) -> int: ...


def _taken(connection: Connection, statement: Update, params: dict[str, Any]) -> Taken | None:
    row = connection.execute(statement, params).first()
    return Taken.of(row) if row is not None else None


def _upload_row(image: _Released) -> OutboxMessage:
    """The message that asks for an image to be uploaded, after its latest attempt."""
    return outbox_row(upload_message(image.album_id, image.id, image.key, image.attempts))


def _db_time(s: Session) -> datetime:
    """The database's clock (naive UTC, `db_clock.utc_now`), read once for the comparisons
    of a ledger transaction: leases, in-flight windows, quiet times, the relay's claims."""
    now: datetime | None = s.scalar(select(utc_now()))
    assert now is not None
    return now


def _pause(image: Image, reason: str, code: int | None, give_back_attempt: bool) -> None:
    if image.state in TERMINAL:
        return
    if give_back_attempt and image.attempts:
        image.attempts -= 1
    image.state, image.error, image.error_code = ImageState.PAUSED, reason, code
    image.next_attempt_at = image.lease_until = None


def _page_waits(s: Session, image_id: int, refused: bytes | None) -> bool:
    """Whether the image's Page waits for its owner, its connection locked (the single-tenant
    Page, or a connection to another Page, waits as before); a connection that still holds
    the token Facebook `refused` is marked `needs_reconnect` now."""
    owner = s.execute(
        select(Album.user_id, Album.page_id)
        .join(Image, Image.album_id == Album.id)
        .where(Image.id == image_id)
    ).first()
    if owner is None:
        return True
    return _owner_page_waits(s, owner.user_id, owner.page_id, refused)


def _owner_page_waits(s: Session, user_id: int, page_id: str | None, refused: bytes | None) -> bool:
    """`_page_waits` for the album of `user_id` publishing to `page_id`."""
    if page_id is None:
        return True
    connection = s.get(PageConnection, user_id, with_for_update=True)
    if connection is None or connection.page_id != page_id:
        return True
    if refused is not None and connection.token_sealed == refused:
        if connection.state != PageState.NEEDS_RECONNECT:
            connection.state, connection.reconnect_asked_at = PageState.NEEDS_RECONNECT, utcnow()
        return True
    return connection.state != PageState.CONNECTED


def _resume_posts(s: Session, user_id: int, page_id: str) -> list[OutboxMessage]:
    """The user's multi-photo posts to this Page paused for it (`Store.pause_post`): pending
    again, each requested for its settle now (the caller holds the Page connection's lock)."""
    albums = list(
        s.scalars(
            select(Album)
            .where(
                Album.user_id == user_id,
                Album.page_id == page_id,
                Album.post_state == PostState.PAUSED,
            )
            .order_by(Album.id)
            .with_for_update()
        )
    )
    for album in albums:
        album.post_state, album.post_error, album.post_claimed_at = PostState.PENDING, None, None
    return [
        _outbox_row(
            messages.FeedPostRequested(album_id=album.id, settle_seq=album.settle_seq),
            topology.FEED_POSTS,
        )
        for album in albums
    ]


def _hand_back(image: Image | None) -> None:
    """An attempt refused for its Page's sake, not the image's, and surely not on Facebook:
    it ends as not sent and is not counted."""
    if image is None or image.state != ImageState.UPLOADING:
        return
    image.attempts = max(0, image.attempts - 1)
    image.state, image.lease_until, image.attempt_started_at = ImageState.RETRYING, None, None
    image.in_doubt = False


def _stale(image: Image, fence: int | None) -> bool:
    """A delivery following an older attempt than the image's latest: another copy took over
    (`fencing.superseded`). The copy that started a latest attempt with no outcome yet is the
    only one left: the broker redelivered it, or the runtime delayed it after a store outage, or
    it waited out that attempt's window (a duplicate of it meets the lease or the window)."""
    return fencing.superseded(
        fence, image.attempts, image.state == ImageState.UPLOADING, image.attempt_fence
    )


def _busy_until(image: Image, now: datetime, in_flight_window: timedelta) -> datetime:
    """Until when the image's latest attempt may still be running or reach Facebook."""
    running = image.state == ImageState.UPLOADING or image.in_doubt
    if image.attempt_started_at is None or not running:
        return now
    until = image.attempt_started_at + in_flight_window
    if image.state == ImageState.UPLOADING and image.lease_until is not None:
        until = max(until, image.lease_until)
    return until


def _in_attempt(attempt: int | None) -> tuple[ColumnElement[bool], ...]:
    """The condition that the image is still in `attempt` (none if the caller gave none)."""
    return () if attempt is None else (Image.attempts == attempt,)


def _lost(
    s: Session, now: datetime, quiet_for: timedelta, in_flight_window: timedelta, queue_empty: bool
) -> ColumnElement[bool]:
    """Images whose message is gone; the rule is explained in services/uploader/sweeper.py."""
    entered = func.coalesce(Image.queued_at, Image.updated_at)
    waited = (Image.state.in_((ImageState.QUEUED, ImageState.RETRYING))) & (
        entered < now - quiet_for
    )
    # An attempt in doubt sends its copies round the wait tiers (busy) until its window ends.
    waited &= or_(
        Image.in_doubt.is_not(True), Image.attempt_started_at < now - in_flight_window - quiet_for
    )
    # The newest queue entry already taken, among attempts started within `quiet_for`.
    passed = s.scalar(
        select(func.max(entered)).where(
            Image.attempt_started_at > now - quiet_for, entered <= Image.attempt_started_at
        )
    )
    if passed is None:
        # Nothing taken for that long. An empty queue has none of their messages left; one
        # that holds messages waits for a stalled consumer (a store outage's pauses, an open
        # breaker), and sending its whole backlog again would double it.
        behind = waited if queue_empty else false()
    else:  # a message that entered `quiet_for` after theirs was taken: theirs are gone
        behind = waited & (entered < passed - quiet_for)
    stuck = (
        (Image.state == ImageState.UPLOADING)
        & or_(Image.lease_until.is_(None), Image.lease_until < now)
        & (Image.attempt_started_at < now - in_flight_window - quiet_for)
    )
    return or_(behind, stuck) & Image.unreleased.is_not(True)


def _resend(image: Image, now: datetime) -> None:
    """The image gets a new message now: it re-enters the queue, quiet again from now."""
    image.queued_at = now
    if image.state == ImageState.RETRYING:
        image.next_attempt_at = now
    image.updated_at = now


def _images(s: Session, album_id: str) -> list[Image]:
    return list(s.scalars(select(Image).where(Image.album_id == album_id).order_by(Image.position)))


def _assume_attempts_sent(connection: Connection) -> None:
    """A store from before `images.sent_at`: whether an attempt sent was never written, so
    every image attempted without a recorded photo may have sent one (its retry reads the
    album back, and it is a rival of its look-alikes), as that version took them."""
    connection.execute(
        update(Image)
        .where(Image.photo_id.is_(None), Image.first_attempt_at.is_not(None))
        .values(sent_at=func.coalesce(Image.attempt_started_at, Image.first_attempt_at))
    )


def _in_flight_s(image: Image, now: datetime, window: timedelta) -> float:
    """How long a photo this image's latest attempt may still land (`_busy_until`: while it
    runs, or its uploader died, or it ended in doubt), unless that attempt has not sent yet
    (it is reconciling: nothing of it can land)."""
    started = image.attempt_started_at
    if (
        image.state == ImageState.UPLOADING
        and started is not None
        and (image.sent_at is None or image.sent_at < started)
    ):
        return 0.0
    return max(0.0, (_busy_until(image, now, window) - now).total_seconds())


def _claim_fb_album(album: Album, stale_after: timedelta) -> FbAlbumClaim:
    """The caller holds the album's row lock. Claim times are the database's: a claim made on
    one host is judged stale on another."""
    session = object_session(album)
    assert session is not None, "the album must be loaded in the caller's transaction"
    now = session.scalar(select(utc_now()))
    assert now is not None
    if album.destination == Destination.POST:
        return FbAlbumClaim(None, False, False, post=True)
    claim = decide_claim(
        album.fb_album_id,
        album.fb_album_claimed_at,
        bool(album.fb_album_create_uncertain),
        now,
        stale_after,
    )
    if claim.mine:
        album.fb_album_claimed_at, album.fb_album_create_uncertain = now, None
    return claim


def _standing(s: Session, album_id: str) -> list[tuple[str, bool]]:
    """Each image of the album: its state, and whether it waits for its turn."""
    return [
        (state, bool(unreleased))
        for state, unreleased in s.execute(
            select(Image.state, Image.unreleased).where(Image.album_id == album_id)
        )
    ]


def _release_turns(
    s: Session, album: Album, standing: Sequence[tuple[str, bool]] | None = None
) -> list[OutboxMessage]:
    """Release the album's next waiting images, in the album's order, into the room its window
    has: an upload message each, entering the work queue now. Images released and not ended
    hold the room (retrying, paused or uploading ones too). The caller holds the album's row
    lock, so two images ending at once cannot both fill the same room. `standing`: the
    album's images as `_standing` read them under that lock (read here when not given)."""
    if album.release_window is None:
        return []
    if standing is None:
        standing = _standing(s, album.id)
    live = [waits for state, waits in standing if state not in TERMINAL]
    room = min(album.release_window - live.count(False), live.count(True))
    if room <= 0:
        return []
    next_ones = (
        select(Image.id)
        .where(Image.album_id == album.id, Image.unreleased.is_(True), Image.state.not_in(TERMINAL))
        .order_by(Image.position)
        .limit(room)
    )
    # One statement releases them and says what their messages carry (the database's clock).
    released = s.execute(
        update(Image)
        .where(Image.id.in_(next_ones.scalar_subquery()))
        .values(unreleased=None, queued_at=utc_now())
        .returning(Image.position, Image.id, Image.album_id, Image.key, Image.attempts),
        execution_options={"synchronize_session": False},
    ).all()
    rows = [_upload_row(image) for image in sorted(released)]
    s.add_all(rows)
    s.flush()
    return rows


def _release_stalled_turns(s: Session, limit: int) -> list[OutboxMessage]:
    """Release waiting images of albums whose window has room: the same transaction that ends
    an image releases the next, so only a defect can leave an album so, and this repairs it.
    An album another transaction holds is left to that one."""
    waiting = (
        select(Image.album_id)
        .where(Image.unreleased.is_(True), Image.state.not_in(TERMINAL))
        .distinct()
        .limit(limit)
    )
    albums = s.scalars(
        select(Album)
        .where(Album.id.in_(waiting), Album.state == AlbumState.PUBLISHING)
        .order_by(Album.id)
        .with_for_update(skip_locked=True)
    ).all()
    rows = [row for album in albums for row in _release_turns(s, album)]
    if rows:
        log.warning("%d images waited for a turn that had room; released", len(rows))
    return rows


def _settle_if_ended(
    s: Session, album: Album, states: Sequence[str] | None = None
) -> list[OutboxMessage]:
    """Settle the album once every image ended (`album_rules`); the caller holds the album's
    row lock. `states`: its images' states read under that lock (read here when not given)."""
    if album.state != AlbumState.PUBLISHING:
        return []
    # The states alone first: of an album's twenty images ending, only the last needs them all
    # loaded.
    if states is None:
        states = s.scalars(select(Image.state).where(Image.album_id == album.id)).all()
    if not album_rules.has_ended(album.state, states):
        return []
    images = [
        album_rules.ImageEnd(i.id, i.key, i.state, i.photo_id, i.error)
        for i in _images(s, album.id)
    ]
    album.settle_seq += 1
    if album.destination == Destination.POST and _to_post(s, album):
        # The post is the album's second job: the album is publishing until it ended, and its
        # settled event (the email) follows it.
        album.post_state, album.post_claimed_at, album.post_error = PostState.PENDING, None, None
        row = _outbox_row(
            messages.FeedPostRequested(album_id=album.id, settle_seq=album.settle_seq),
            topology.FEED_POSTS,
        )
    else:
        album.state, album.settled_at = album_rules.settled_state(images), utcnow()
        row = _settled_row(s, album, images)
    s.add(row)
    s.flush()
    return [row]


def _settled_row(
    s: Session, album: Album, images: Sequence[album_rules.ImageEnd] | None = None
) -> OutboxMessage:
    """The album's settled event; `images`: its images' ends, when the caller read them."""
    if images is None:
        images = [
            album_rules.ImageEnd(i.id, i.key, i.state, i.photo_id, i.error)
            for i in _images(s, album.id)
        ]
    return _outbox_row(
        album_rules.settled_event(album.id, album.settle_seq, images), topology.ALBUM_SETTLED
    )


def _to_post(s: Session, album: Album) -> list[str]:
    """The uploaded photo ids no earlier post of the album attached, in the album's order."""
    posted = set(album.posted_photos or [])
    return [
        i.photo_id
        for i in _images(s, album.id)
        if i.state == ImageState.UPLOADED and i.photo_id and i.photo_id not in posted
    ]


def _stuck(s: Session, album_id: str, expected_end: datetime) -> StuckAlbum:
    album = s.get(Album, album_id)
    assert album is not None  # joined just now; albums are never deleted
    images = tuple(
        StuckImage(i.id, i.key, i.state, *_waiting_for(i))
        for i in _images(s, album_id)
        if i.state not in TERMINAL
    )
    return StuckAlbum(album.id, album.title, album.user_id, expected_end, images)


def _waiting_for(image: Image) -> tuple[str, datetime | None]:
    """What an unfinished image waits for, and since when it was due."""
    if image.state == ImageState.UPLOADING:
        return "its attempt to end (lease)", image.lease_until
    if image.state == ImageState.RETRYING:
        return "its retry time", image.next_attempt_at
    if image.state == ImageState.PAUSED:
        return "its Page to be reconnected", None
    if image.unreleased:
        return "its album's turn", image.queued_at
    return "an uploader to take its message", image.queued_at


def _page_view(connection: PageConnection | None) -> PageView | None:
    if connection is None:
        return None
    c = connection
    return PageView(c.page_id, c.page_name, c.state, c.connected_at)


def _user_by_email(session: Session, email: str) -> User | None:
    """The user of this address, whatever the case of its ASCII letters: one address is one
    user, as notify_email is compared. Checked here, not by a unique index on lower(email), so
    that a store made before the rule, which may hold two spellings of one address, still
    starts: there the exact spelling is the user, and another one is AmbiguousEmail rather
    than a guess (a role or a token given to the wrong user). (A scan of the users: only the
    user commands ask.)"""
    found = session.scalars(
        select(User).where(func.lower(User.email) == func.lower(email)).order_by(User.id)
    ).all()
    exact = [user for user in found if user.email == email]
    if exact:
        return exact[0]
    if len(found) > 1:
        raise AmbiguousEmail(email, [user.email for user in found])
    return found[0] if found else None


def _user_view(user: User | Row[int, str, str, int | None, str | None]) -> UserView:
    """From the ORM object or a row of its columns (`user_by_token`'s one statement)."""
    return UserView(user.id, user.email, user.prefix, user.session_generation or 0, user.role)


def _new_token(user: User) -> str:
    """Give the user a new token (returned once; only its hash is kept)."""
    token = secrets.token_urlsafe(24)
    if user.token_hash:
        _end_sessions(user)  # sessions signed in with the old token go with it
    user.token_hash = hash_token(token)
    return token


def _end_sessions(user: User) -> None:
    user.session_generation = (user.session_generation or 0) + 1


def _age(now: datetime | None, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if now and since else 0.0
