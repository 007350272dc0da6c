"""A 190 answered to the multi-photo post itself is the Page's, not the post's: it must not
fail the post for good (issue 10). Reproduction; the fix is not done yet."""

from __future__ import annotations

from typing import Any

import pytest

from services.uploader.feed_poster import FeedPoster
from services.uploader.graph_client import GraphError
from services.uploader.handler import Policy
from shared import messages, outcomes
from shared.store.views import PostJob


class _Store:
    """Only what the post job calls before and at the post."""

    def __init__(self) -> None:
        self.released = 0

    def start_post(self, album_id: str, settle_seq: int, stale: Any) -> PostJob:
        return PostJob(True, "Trip", ("p1", "p2"))

    def release_post_claim(self, album_id: str) -> None:
        self.released += 1


class _RevokedGraph:
    def create_post(self, message: str, photo_ids: Any) -> str:
        raise GraphError("Error validating access token", http_status=400, code=190)

    def list_posts(self) -> list[dict[str, Any]]:
        return []


@pytest.mark.xfail(strict=True, reason="issue 10 not fixed: a 190 on the post fails it for good")
def test_a_190_on_the_post_does_not_fail_it_for_good() -> None:
    poster = FeedPoster(
        _Store(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda album: _RevokedGraph(),
        Policy((1,), 3),
    )
    message = messages.FeedPostRequested.model_construct(album_id="a1", settle_seq=1)
    with pytest.raises(outcomes.Outcome) as raised:
        poster(message, 1)
    assert not isinstance(raised.value, outcomes.Permanent), raised.value
