"""Accepting an album, the same for the JSON API and the publish page: what the user may not
ask for, the Page it goes to, and the commit with its outbox rows followed by their first send.
"""

from __future__ import annotations

import functools
from typing import Any

from shared.store import (
    Created,
    Destination,
    PagePick,
    PageState,
    PageView,
    QuotaExceeded,
    UserView,
)

from .api_errors import error_response
from .idempotency import fingerprint
from .page_albums import PageUnavailable
from .rate_limits import Refused, per_user
from .services import Services
from .validation import AlbumRequest

#: Per user, on the API and the web pages alike (one allowance each).
limit_publish = per_user("publish", lambda s: s.publish_rate_limit, "albums published")
limit_retry = per_user("retry", lambda s: s.retry_rate_limit, "retries of failed images")


class NoPage(Exception):
    """The user has no Page to publish to: none connected (and no single-tenant Page), or
    the connected one waits for a reconnect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def target_page(services: Services) -> PagePick:
    """What picks the Page a new album of the user's publishes to, recorded with it, from
    their connected Page (read in the album's transaction): that Page, else None for the
    single-tenant Page; NoPage if there is neither."""
    return functools.partial(_pick_page, services.settings.single_tenant_page is not None)


def _pick_page(single_tenant: bool, page: PageView | None) -> str | None:
    if page is not None:
        if page.state != PageState.CONNECTED:
            raise NoPage(
                f"your Facebook Page {page.page_name} must be reconnected before "
                "publishing (Facebook no longer accepts its token, or blocked it): "
                "open /connect/facebook"
            )
        return page.page_id
    if single_tenant:
        return None
    raise NoPage("connect a Facebook Page first: open /connect/facebook in a browser")


def user_page(services: Services, user_id: int) -> tuple[str, str] | None:
    """The Page (id, token) the user publishes to now: their connected Page, else the
    single-tenant one; None when there is neither (publishing says why)."""
    page = services.store.page(user_id)
    if page is not None:
        credentials = services.store.page_credentials(user_id, page.page_id)
        if page.state != PageState.CONNECTED or credentials is None:
            return None
        return page.page_id, services.cipher.decrypt(credentials.token_sealed)
    return services.settings.single_tenant_page


def check_album_for(services: Services, user: UserView, album: AlbumRequest) -> str | None:
    """What the user may not ask for, whatever the album: mail to an address that is not
    theirs, or more images than their daily quota ever allows. None: nothing."""
    if album.notify_email and album.notify_email.casefold() != user.email.casefold():
        return (
            f"notify_email must be your own address ({user.email}): mail goes only to "
            "an address that is proven to be yours (leave it out to be mailed there)"
        )
    quota = services.settings.images_per_day
    if len(album.images) > quota:
        return (
            f"this album has {len(album.images)} images and your quota is {quota} images "
            "a day: split it into albums of at most that many"
        )
    return None


def quota_refusal(exc: QuotaExceeded) -> Refused:
    """The 429 of an album over the images-per-day quota: the quota, what is used, when the
    album fits."""
    return Refused(
        f"Your quota is {exc.quota} images a day and your albums of the last 24 "
        f"hours hold {exc.used} of them: this album's {exc.requested} images do not "
        f"fit, so nothing was published. The quota resets as albums pass 24 hours: "
        f"this album fits from {exc.fits_at:%Y-%m-%d %H:%M:%S} UTC",
        exc.wait_s,
    )


def check_destination(
    services: Services, user_id: int, album: AlbumRequest
) -> tuple[Any, int] | None:
    """An existing album must be one of the Page's: refused before anything is recorded."""
    destination = album.destination
    if destination.kind != Destination.EXISTING_ALBUM.value or destination.id is None:
        return None
    page = user_page(services, user_id)
    if page is None:
        return None  # publishing refuses it with the reason (NoPage)
    try:
        known = services.page_albums.has(*page, destination.id)
    except PageUnavailable as exc:
        return error_response(503, f"{exc}; try again (nothing was published)")
    if not known:
        return error_response(
            422,
            f"album {destination.id} is not an album of your Page "
            "(GET /api/page/albums lists them)",
        )
    return None


def record_and_send(
    services: Services, user_id: int, album: AlbumRequest, key: str | None
) -> tuple[Created, bool]:
    """Commit the album with its outbox rows (once per idempotency key), then publish them.

    Nothing after the commit may fail the request: the album is accepted then, and whatever
    this publish misses (the broker away, the store failing to mark the rows sent) the relay
    sends. Returns the album and whether the broker confirmed its messages now (their rows
    are marked published just after, off the request's path: `Outbox.send_committed`); raises
    QuotaExceeded (nothing recorded) if the album does not fit in the user's daily quota."""
    pick_page = target_page(services)
    outbox = services.outbox  # built before the commit, so that cannot fail after it
    destination = (album.destination.kind, album.destination.id)
    window = services.settings.album_window
    quota = services.settings.images_per_day
    if key is None:
        album_id, rows = services.store.create_album(
            user_id,
            album.title,
            album.notify_email,
            album.images,
            album.captions,
            album.description,
            pick_page=pick_page,
            destination=destination,
            window=window,
            images_per_day=quota,
        )
        created = Created(album_id, rows, replayed=False)
    else:
        created = services.store.create_album_once(
            user_id,
            key,
            fingerprint(album),
            album.title,
            album.notify_email,
            album.images,
            album.captions,
            album.description,
            pick_page=pick_page,
            destination=destination,
            window=window,
            images_per_day=quota,
        )
    return created, outbox.send_committed(created.rows)
