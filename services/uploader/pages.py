"""Where an album's Page id and token come from: the Page the album recorded when it was
posted, its owner's connection (token opened here, at the edge), or the single-tenant Page.

The handler asks `client_for(album_id)` before each attempt; a Page whose token Facebook
refused (190) or that Facebook blocked (368) raises `PagePaused` until its owner reconnects.
Tokens never travel in a message: only the album id does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from shared.config.token_cipher import TokenCipher
from shared.store import PageState, Store

#: Builds a Graph client for (page id, page token).
ClientFactory = Callable[[str, str], Any]

RECONNECT_REASON = "waiting for you to reconnect your Facebook Page (its token was refused)"
BLOCKED_REASON = (
    "Facebook blocked your Page for policy reasons; reconnect it once the block is lifted"
)


class PagePaused(Exception):
    """The album's Page cannot be published to until its owner reconnects it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PageClient(NamedTuple):
    page_id: str
    client: Any
    #: The Page token as stored (sealed), to tell whether the owner reconnected since; None
    #: for the single-tenant Page.
    sealed: bytes | None


class Pages:
    def __init__(
        self,
        store: Store,
        cipher: TokenCipher,
        make_client: ClientFactory,
        single_tenant: tuple[str, str] | None = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._make_client = make_client
        self._single_tenant = single_tenant
        self._clients: dict[tuple[str, str], Any] = {}
        #: Each album's owner and Page: recorded when it was posted and never changed.
        self._owners: dict[str, tuple[int, str | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Pages(<tokens hidden>)"

    def _token_for(self, album_id: str) -> tuple[str, str, bytes | None]:
        """The album's Page id, its token and the token sealed, or PagePaused."""
        user_id, page_id = self._owner(album_id)
        if page_id is None:  # posted for the single-tenant Page
            if self._single_tenant is None:
                raise PagePaused(RECONNECT_REASON)
            return (*self._single_tenant, None)
        credentials = self._store.page_credentials(user_id, page_id)
        if credentials is None or credentials.state == PageState.NEEDS_RECONNECT:
            raise PagePaused(RECONNECT_REASON)
        if credentials.state == PageState.BLOCKED:
            raise PagePaused(BLOCKED_REASON)
        assert credentials.state == PageState.CONNECTED
        sealed = credentials.token_sealed
        return page_id, self._cipher.decrypt(sealed), sealed

    def _owner(self, album_id: str) -> tuple[int, str | None]:
        """The album's owner and Page, read once per album (LookupError: no such album)."""
        with self._lock:
            known = self._owners.get(album_id)
        if known is not None:
            return known
        owner = self._store.album_page(album_id)
        if owner is None:
            raise LookupError(f"album {album_id} is not in the store")
        with self._lock:
            if len(self._owners) > 10_000:  # old albums' images are done with
                self._owners.clear()
            self._owners[album_id] = owner
        return owner

    def client_for(self, album_id: str) -> PageClient:
        """The album's Page id and a Graph client for it, kept per Page and token (a
        reconnect's new token gets a new client)."""
        page_id, token, sealed = self._token_for(album_id)
        key = (page_id, hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._make_client(page_id, token)
            return PageClient(page_id, client, sealed)

    def is_connected(self, album_id: str) -> bool:
        """Whether the album publishes to a user's connected Page (not the single-tenant
        one, which only its operator can fix)."""
        owner = self._store.album_page(album_id)
        return owner is not None and owner[1] is not None

    def blocked(self, album_id: str) -> bool:
        """Facebook blocked the Page (368): its other albums wait for a reconnect. (A token
        Facebook refused (190) is marked with the image it paused: `Store.pause_for_page`.)"""
        owner = self._store.album_page(album_id)
        if owner is None or owner[1] is None:  # the single-tenant Page: ops must act
            return False
        return self._store.set_page_state(owner[0], owner[1], PageState.BLOCKED)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
