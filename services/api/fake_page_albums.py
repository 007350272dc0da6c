"""An in-memory stand-in for `PageAlbums`, for tests of the API's pages without Facebook.

Each Page's albums are what the test gives (a Page it names no albums for has none), and each
lookup is counted: the real one is a Graph request (a client, a connection) every time the
publish page is drawn or an album is published into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .page_albums import PageAlbums


class FakePageAlbums(PageAlbums):
    def __init__(self, albums: Mapping[str, Sequence[Mapping[str, str]]] | None = None) -> None:
        # No settings: there is no Graph API to address.
        self._pages = {
            page: [dict(album) for album in found] for page, found in (albums or {}).items()
        }
        self.lookups = 0

    def albums(self, page_id: str, token: str) -> list[dict[str, Any]]:
        """`{"id", "name"}` of each of the Page's albums, as `PageAlbums.albums` gives them."""
        self.lookups += 1
        return [dict(album) for album in self._pages.get(page_id, [])]
