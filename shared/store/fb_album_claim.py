"""Who creates an album's Facebook album: the rule, as a plain function of what the store holds.

A claim is held from its time (the database's clock) until a create sent under it can no longer
land on Facebook (`stale_after`: the Graph timeout plus a margin). A create that ended without
an answer keeps the claim, marked uncertain, so that nobody creates blindly meanwhile; the
next creator, once the claim lapsed, looks for the album first (`taken_over`: by title and
time, see docs/facebook-albums.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.store.views import FbAlbumClaim


def decide_claim(
    recorded: str | None,
    claimed_at: datetime | None,
    uncertain: bool,
    now: datetime,
    stale_after: timedelta,
) -> FbAlbumClaim:
    """The caller's claim; when it is `mine`, the store records `now` as the claim's time."""
    if recorded:
        return FbAlbumClaim(recorded, False, False)
    if claimed_at is not None and now - claimed_at < stale_after:
        return FbAlbumClaim(None, False, False, uncertain=uncertain)
    return FbAlbumClaim(None, True, claimed_at is not None)
