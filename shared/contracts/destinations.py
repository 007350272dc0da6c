"""Where an album goes on Facebook, as the API, the page and the email name it.

- ``new_album``: a Facebook album made for it (where Facebook still allows creating one; when
  it refuses for good, the album becomes a ``post`` by itself and records why);
- ``album``: an album of the Page the user picked (its id);
- ``post``: one multi-photo post: each photo uploaded unpublished, then one feed post
  attaching them once the album settled. Facts and sources: docs/facebook-destinations.md.
"""

from __future__ import annotations

from shared.store.tables import DESTINATIONS, Destination

__all__ = ["DESTINATIONS", "Destination", "post_url"]


def post_url(post_id: str) -> str:
    """A Page post's address: Graph's post id is `<page id>_<post id>`."""
    page, _, post = post_id.partition("_")
    if not post:
        return f"https://www.facebook.com/{post_id}"
    return f"https://www.facebook.com/{page}/posts/{post}"
