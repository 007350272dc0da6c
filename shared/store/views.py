"""The read models the store hands to the services: plain data, no session attached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.store.tables import Album, Destination, Image, OutboxMessage


@dataclass(frozen=True)
class UserView:
    id: int
    email: str
    prefix: str
    #: Which of the user's sessions are still valid (shared/store/tables.py, User).
    session_generation: int = 0
    #: "operator": may use the dead-letter desk; None: an end user.
    role: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class PageView:
    """A user's connected Page, without its token."""

    page_id: str
    page_name: str
    state: str
    connected_at: datetime


@dataclass(frozen=True)
class ReconnectMail:
    """An owner to ask, once, to reconnect their Page."""

    user_id: int
    email: str
    page_name: str
    state: str


@dataclass(frozen=True)
class PageCredentials:
    """What the uploader needs to publish to a Page: its id, its state and its sealed token
    (opened by the uploader's cipher at the edge)."""

    user_id: int
    page_id: str
    state: str
    token_sealed: bytes


@dataclass(frozen=True)
class ImageView:
    id: int
    key: str
    state: str
    attempts: int
    photo_id: str | None
    error: str | None
    next_attempt_at: datetime | None
    #: The fencing number of the message that started its latest attempt
    #: (`shared/contracts/fencing.py`).
    attempt_fence: int | None = None


@dataclass(frozen=True)
class Reopened:
    """What a retry of an album's failed images did: how many it re-opened, and the messages of
    those whose turn came at once (the album's window: the others wait for theirs)."""

    images: int
    rows: list[OutboxMessage]


@dataclass(frozen=True)
class Created:
    """What creating an album with an idempotency key gave: a new album and its messages, or
    (`replayed`) the album an earlier request with the same key created, and no messages."""

    album_id: str
    rows: list[OutboxMessage]
    replayed: bool


@dataclass(frozen=True)
class AlbumView:
    id: str
    user_id: int
    title: str
    notify_email: str | None
    state: str
    fb_album_id: str | None
    settle_seq: int
    created_at: datetime
    images: tuple[ImageView, ...]
    destination: str = Destination.NEW_ALBUM
    destination_note: str | None = None
    post_state: str | None = None
    fb_post_id: str | None = None
    post_error: str | None = None


@dataclass(frozen=True)
class FbAlbumClaim:
    fb_album_id: str | None
    mine: bool
    #: An earlier claimer never finished: it may have created the album unrecorded.
    taken_over: bool
    #: Not the caller's: the claimer's create ended without an answer, so the album may exist
    #: on Facebook unrecorded (look for it by title and time rather than only wait).
    uncertain: bool = False
    #: The album goes out as one multi-photo post: its photos go to the Page unpublished.
    post: bool = False


@dataclass(frozen=True)
class PostJob:
    """A multi-photo post to make now (`taken`), or why not: it is done (`state` posted or
    failed, or the album settled again since), or another worker holds it for `busy_for` s.
    `taken_over`: an earlier worker's post may have landed unrecorded: look first."""

    taken: bool
    title: str = ""
    photo_ids: tuple[str, ...] = ()
    state: str | None = None
    busy_for: float = 0.0
    taken_over: bool = False
    description: str = ""


@dataclass(frozen=True)
class Start:
    """The attempt number taken, or None: ended (busy_for 0), a stale duplicate (`stale`) or
    in flight elsewhere (busy_for > 0).

    A taken attempt also carries what it needs next, read in the same transaction: the album's
    title and who creates its Facebook album (`fb_album`).
    """

    attempt: int | None
    busy_for: float
    album_title: str = ""
    fb_album: FbAlbumClaim | None = None
    stale: bool = False
    #: What the photo is sent with, and what recognises it later (no public mark).
    caption: str = ""
    album_description: str = ""
    album_created_at: datetime | None = None
    #: The first attempt's start (the database's clock) and the source's size, once read.
    first_attempt_at: datetime | None = None
    size: tuple[int, int] | None = None
    #: The object to send, as the store holds it (never the message's).
    key: str = ""


@dataclass(frozen=True)
class StoredImage:
    """What an image's upload message must name: its album and its object."""

    album_id: str
    key: str


@dataclass(frozen=True)
class Unrecorded:
    """An image of the album without a recorded photo that began to send one (an attempt that
    never reached the send, killed during its album decision or S3 GET say, cannot be on
    Facebook)."""

    image_id: int
    caption: str
    size: tuple[int, int] | None
    first_attempt_at: datetime | None
    #: Seconds until its current attempt can no longer land (0: none in flight).
    in_flight_s: float


@dataclass(frozen=True)
class AlbumPhotoLedger:
    """What the store knows of an album's photos, for reconciling an uncertain attempt."""

    claimed: list[str]
    unrecorded: list[Unrecorded]

    def began_sending(self, image_id: int) -> bool:
        """Whether an attempt of the image began to send a photo not recorded yet."""
        return any(u.image_id == image_id for u in self.unrecorded)


def image_view(image: Image) -> ImageView:
    return ImageView(
        image.id,
        image.key,
        image.state,
        image.attempts,
        image.photo_id,
        image.error,
        image.next_attempt_at,
        image.attempt_fence,
    )


def album_view(album: Album, images: Sequence[Image]) -> AlbumView:
    return AlbumView(
        album.id,
        album.user_id,
        album.title,
        album.notify_email,
        album.state,
        album.fb_album_id,
        album.settle_seq,
        album.created_at,
        tuple(image_view(i) for i in images),
        album.destination or Destination.NEW_ALBUM,
        album.destination_note,
        album.post_state,
        album.fb_post_id,
        album.post_error,
    )


@dataclass(frozen=True)
class NotificationClaim:
    """What a notifier may do about one settle's email: SEND it (holding `claim_id`, the token
    its mark or release must show), nothing (SENT), or wait for another sender (BUSY)."""

    state: str
    claim_id: str | None = None


@dataclass(frozen=True)
class OutboxRetry:
    """An outbox row the broker refused: for the log, which message waits, until when, why."""

    id: int
    message_id: str
    exchange: str
    routing_key: str
    attempts: int
    next_attempt_at: datetime
    last_error: str


@dataclass(frozen=True)
class StoreFigures:
    """What the store says at one moment, for the metrics (shared/observability/store_metrics.py).
    Ages are seconds by the database's clock; 0 when there is nothing to age."""

    albums_publishing: int
    oldest_publishing_age_s: float
    uploading_past_lease: int
    outbox_backlog: int
    outbox_oldest_age_s: float
    #: Seconds each held scope (a Page id, or "app") still waits out a throttle.
    holds: dict[str, float]


@dataclass(frozen=True)
class LetterGroup:
    """Waiting dead letters of one kind of end and Graph code: how many, first and last seen."""

    kind: str
    code: int | None
    name: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class LetterView:
    """One dead letter as the desk's index holds it."""

    message_id: str
    queue: str
    album_id: str | None
    image_id: int | None
    kind: str
    code: int | None
    group: str
    reason: str
    headers: dict[str, object]
    body: bytes
    dead_at: datetime
    state: str
    handled_by: str | None
    handled_at: datetime | None


@dataclass(frozen=True)
class AuditView:
    """One operator action: who, when, what, on which target, how many letters."""

    at: datetime
    operator: str
    action: str
    target: str
    count: int


@dataclass(frozen=True)
class StuckImage:
    """An unfinished image of a stuck album: what it waits for and until when it was due."""

    image_id: int
    key: str
    state: str
    waiting_for: str
    due: datetime | None


@dataclass(frozen=True)
class StuckAlbum:
    """An album publishing past its expected end (its images' latest due time plus grace)."""

    album_id: str
    title: str
    user_id: int
    expected_end: datetime
    images: tuple[StuckImage, ...]
