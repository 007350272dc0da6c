"""The Page's albums a user may publish into (`{"kind": "album", "id": ...}`).

Which Page, and its token, come from the settings (`GraphSettings`) until each user connects a
Page of their own: this is the one place the API asks Facebook, so that change lands here.
"""

from __future__ import annotations

from typing import Any

from services.uploader.graph_client import GraphClient
from shared.settings import GraphSettings

#: A user picks from a list: albums past this many are not offered.
_MAX_ALBUMS = 500


class PageUnavailable(Exception):
    """Facebook did not list the Page's albums (down, throttled, the token refused)."""


class PageAlbums:
    def __init__(self, settings: GraphSettings) -> None:
        self._graph = GraphClient(settings.graph_api_url, settings.graph_api_version,
                                  settings.facebook_page_id, settings.facebook_page_token,
                                  timeout=(5.0, 15.0), pool_size=2)

    def albums(self) -> list[dict[str, Any]]:
        """`{"id", "name"}` of each of the Page's albums, as Facebook lists them."""
        try:
            found = []
            for album in self._graph.list_albums():
                found.append({"id": str(album["id"]), "name": str(album.get("name") or "")})
                if len(found) >= _MAX_ALBUMS:
                    break
            return found
        except Exception as exc:  # whatever went wrong, the caller answers 503 with it
            raise PageUnavailable(f"Facebook did not list the Page's albums: {exc}") from exc

    def has(self, album_id: str) -> bool:
        return any(album["id"] == album_id for album in self.albums())
