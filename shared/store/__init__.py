"""The store (SQLAlchemy): what the services record and read.

`repository.Store` is the one way in; `tables` holds the ORM tables and states, `views` the plain
read models handed out, `engine` how SQLite and PostgreSQL are set up.
"""

from shared.store.engine import PG_CONNECT_ARGS, make_engine
from shared.store.repository import KeyReused, Store, hash_token
from shared.store.tables import (
    BUSY,
    DONE,
    DONE_WITH_FAILURES,
    FAILED,
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
    Start,
    UserView,
)

__all__ = [
    "BUSY", "DONE", "DONE_WITH_FAILURES", "FAILED", "PG_CONNECT_ARGS", "PUBLISHING", "QUEUED",
    "RETRYING", "SEND", "SENT", "TERMINAL", "UPLOADED", "UPLOADING", "AlbumView", "Created",
    "FbAlbumClaim", "ImageView", "KeyReused", "NotificationClaim", "OutboxMessage", "Start",
    "Store", "UserView", "hash_token", "make_engine",
]
