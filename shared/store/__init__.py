"""The store (SQLAlchemy): what the services record and read.

`repository.Store` is the one way in; `tables` holds the ORM tables and states, `views` the plain
read models handed out, `engine` how SQLite and PostgreSQL are set up.
"""

from shared.store.album_listing import AlbumCursor, AlbumSummary
from shared.store.daily_quota import QuotaExceeded
from shared.store.engine import PG_CONNECT_ARGS, make_engine
from shared.store.image_take import Ended
from shared.store.repository import AmbiguousEmail, KeyReused, PagePick, Store, hash_token
from shared.store.tables import (
    DESTINATIONS,
    TERMINAL,
    AlbumState,
    ClaimVerdict,
    Destination,
    ImageState,
    LetterState,
    OutboxMessage,
    PageState,
    PostState,
)
from shared.store.views import (
    AlbumView,
    Created,
    FbAlbumClaim,
    ImageView,
    NotificationClaim,
    PageCredentials,
    PageView,
    Reopened,
    Start,
    UserView,
)

__all__ = [
    "DESTINATIONS",
    "PG_CONNECT_ARGS",
    "TERMINAL",
    "AlbumState",
    "Destination",
    "LetterState",
    "PostState",
    "AlbumCursor",
    "AlbumSummary",
    "AlbumView",
    "ClaimVerdict",
    "Created",
    "Ended",
    "FbAlbumClaim",
    "ImageState",
    "ImageView",
    "KeyReused",
    "AmbiguousEmail",
    "NotificationClaim",
    "OutboxMessage",
    "PageCredentials",
    "PagePick",
    "PageState",
    "PageView",
    "QuotaExceeded",
    "Reopened",
    "Start",
    "Store",
    "UserView",
    "hash_token",
    "make_engine",
]
