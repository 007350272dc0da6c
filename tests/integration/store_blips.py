"""A store that fails once, where a test says, as a real one does when its connection resets;
and the clock moved on for what the store remembers (leases, claims), instead of waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from shared.store import Store
from shared.store.tables import Album, Image, Notification, utcnow


class BlippingStore:
    """`store`, except that the first call to `method` raises OperationalError (before the
    store is touched: nothing of that call is recorded). Every other call goes through."""

    def __init__(self, store: Store, method: str) -> None:
        self._store = store
        self._method = method
        self.blips = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name != self._method or self.blips:
            return attr

        def blip(*_args: Any, **_kwargs: Any) -> Any:
            self.blips += 1
            raise OperationalError(
                f"{name} (injected)", None, ConnectionResetError("server closed the connection")
            )

        return blip


class StoreOutage:
    """`store`, except that calls to `methods` (every method when None) raise OperationalError
    for `seconds` from the first such call, as a store that went away and came back does.
    Nothing of a failed call is recorded."""

    def __init__(
        self, store: Store, seconds: float, methods: Collection[str] | None = None
    ) -> None:
        self._store = store
        self._seconds = seconds
        self._methods = methods
        self._began: float | None = None
        self._lock = threading.Lock()
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or (self._methods is not None and name not in self._methods):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._down():
                raise OperationalError(
                    f"{name} (injected outage)", None, ConnectionRefusedError("connection refused")
                )
            return attr(*args, **kwargs)

        return call

    def _down(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._began = now if self._began is None else self._began
            down = now - self._began < self._seconds
            self.failures += down
            return down


def age_image(store: Store, image_id: int, by: timedelta = timedelta(minutes=10)) -> None:
    """As if `by` passed since the image's attempt started: its lease, its in-flight window
    and its album's claim to create the Facebook album have all lapsed."""
    past = utcnow() - by
    with store.engine.begin() as connection:
        connection.execute(
            update(Image)
            .where(Image.id == image_id)
            .values(attempt_started_at=past, lease_until=past)
        )
        album_id = connection.scalar(select(Image.album_id).where(Image.id == image_id))
        connection.execute(
            update(Album)
            .where(Album.id == album_id, Album.fb_album_claimed_at.is_not(None))
            .values(fb_album_claimed_at=past)
        )


def age_notifications(store: Store, by: timedelta = timedelta(minutes=10)) -> None:
    """As if `by` passed since every notification was claimed (unconfirmed claims go stale)."""
    with store.engine.begin() as connection:
        connection.execute(update(Notification).values(claimed_at=utcnow() - by))
