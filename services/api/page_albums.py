"""The albums of a user's Page they may publish into (`{"kind": "album", "id": ...}`).

The Page and its token come from the caller (`app.user_page`: the user's connected Page, else
the single-tenant one); this is the one place the API asks Facebook for albums.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.adapters.graph_client import GraphClient, GraphError, GraphNetworkError, graph_text
from shared.config.settings import CommonSettings
from shared.observability import error_ids

log = logging.getLogger(__name__)

#: A user picks from a list: albums past this many are not offered.
_MAX_ALBUMS = 500


class PageUnavailable(Exception):
    """Facebook did not list the Page's albums (down, throttled, the token refused)."""


class PageAlbums:
    def __init__(self, settings: CommonSettings) -> None:
        self._url = settings.graph_api_url
        self._version = settings.graph_api_version

    def albums(self, page_id: str, token: str) -> list[dict[str, Any]]:
        """`{"id", "name"}` of each of the Page's albums, as Facebook lists them."""
        graph = GraphClient(
            self._url, self._version, page_id, token, timeout=(5.0, 15.0), pool_size=1
        )
        try:
            found = []
            for album in graph.list_albums():
                found.append({"id": str(album["id"]), "name": str(album.get("name") or "")})
                if len(found) >= _MAX_ALBUMS:
                    break
            return found
        except Exception as exc:  # whatever went wrong, the caller answers 503 with why
            raise PageUnavailable(f"Facebook did not list the Page's albums: {_why(exc)}") from exc
        finally:
            graph.close()

    def has(self, page_id: str, token: str, album_id: str) -> bool:
        return any(album["id"] == album_id for album in self.albums(page_id, token))


def _why(exc: Exception) -> str:
    """Facebook's own reason, or plain words and an error id (the detail is logged)."""
    if isinstance(exc, GraphNetworkError):
        return f"could not reach Facebook ({exc.cause})"
    if isinstance(exc, GraphError):
        return graph_text(exc) if exc.code is not None else f"HTTP {exc.http_status}"
    return error_ids.plain(error_ids.INTERNAL, log, exc, logging.ERROR)
