"""The store (SQLAlchemy): what the services record and read.

`repository.Store` is the one way in; `tables` holds the ORM tables and states, `views` the plain
read models handed out, `engine` how SQLite and PostgreSQL are set up.
"""

from shared.store.album_listing import AlbumCursor, AlbumSummary
from shared.store.daily_quota import QuotaExceeded
from shared.store.engine import PG_CONNECT_ARGS, make_engine
from shared.store.repository import KeyReused, Store, hash_token
from shared.store.tables import (
    BLOCKED,
    BUSY,
    CONNECTED,
    DONE,
    DONE_WITH_FAILURES,
    FAILED,
    NEEDS_RECONNECT,
    PAUSED,
    PUBLISHING,
    QUEUED,
    RETRYING,
    SEND,
    SENT,
    TERMINAL,
    UPLOADED,
    UPLOADING,
    OutboxMessage,
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
    "BLOCKED", "CONNECTED", "NEEDS_RECONNECT", "PAUSED", "PageCredentials", "PageView",
    "BUSY", "DONE", "DONE_WITH_FAILURES", "FAILED", "PG_CONNECT_ARGS", "PUBLISHING", "QUEUED",
    "RETRYING", "SEND", "SENT", "TERMINAL", "UPLOADED", "UPLOADING", "AlbumCursor",
    "AlbumSummary", "AlbumView", "Created",
    "FbAlbumClaim", "ImageView", "KeyReused", "NotificationClaim", "OutboxMessage",
    "QuotaExceeded", "Reopened", "Start",
    "Store", "UserView", "hash_token", "make_engine",
]
