"""The images-per-day quota: how many images a user's albums of the last 24 hours hold, and
when enough of them age out for an album that does not fit now.

Plain arithmetic over what the store read (under a lock on the user's row, by the database's
clock, so every API process agrees); the store refuses the album as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)


class QuotaExceeded(Exception):
    """The album does not fit in the user's images of the last 24 hours."""

    def __init__(
        self, quota: int, used: int, requested: int, fits_at: datetime, now: datetime
    ) -> None:
        super().__init__(f"{used} of {quota} images used; {requested} more asked for")
        self.quota = quota
        self.used = used
        self.requested = requested
        #: When enough of the counted albums are older than 24 hours (database clock, UTC),
        #: and how many seconds from now that is.
        self.fits_at = fits_at
        self.wait_s = max(0.0, (fits_at - now).total_seconds())


@dataclass(frozen=True)
class Recent:
    """One album of the window: when it was created and how many images it holds."""

    created_at: datetime
    images: int


def check(recent: Sequence[Recent], quota: int, requested: int, now: datetime) -> None:
    """Raise QuotaExceeded unless `requested` more images fit beside `recent` (oldest first).
    An album larger than the quota never fits: the caller refuses it before asking."""
    used = sum(album.images for album in recent)
    over = used + requested - quota
    if over <= 0:
        return
    freed = 0
    for album in recent:
        freed += album.images
        if freed >= over:
            raise QuotaExceeded(quota, used, requested, album.created_at + WINDOW, now)
    raise QuotaExceeded(quota, used, requested, now + WINDOW, now)
