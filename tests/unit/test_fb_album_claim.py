"""Who creates an album's Facebook album: the claim rule, and how long a claim is held."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.uploader.handler import Policy
from shared.store.fb_album_claim import decide_claim
from shared.store.views import FbAlbumClaim

NOW = datetime(2026, 11, 30, 12, 0, 0)
STALE = timedelta(seconds=130)


def test_a_claim_outlives_the_graph_timeout_plus_a_margin() -> None:
    # A claim that lapsed before its create could time out let a slow create be taken over.
    policy = Policy(retry_delays=(5, 30), max_attempts=6, graph_timeout_s=120)
    assert policy.album_claim_stale_s > policy.graph_timeout_s
    assert Policy((5,), 6, graph_timeout_s=300).album_claim_stale_s > 300


def test_a_recorded_album_is_the_answer() -> None:
    assert decide_claim("fb1", NOW, True, NOW, STALE) == FbAlbumClaim("fb1", False, False)


def test_the_first_claimer_creates_without_looking() -> None:
    assert decide_claim(None, None, False, NOW, STALE) == FbAlbumClaim(None, True, False)


def test_a_held_claim_is_waited_for() -> None:
    held = decide_claim(None, NOW - timedelta(seconds=129), False, NOW, STALE)
    assert held == FbAlbumClaim(None, False, False, uncertain=False)


def test_an_uncertain_claim_is_held_until_its_create_can_no_longer_land() -> None:
    held = decide_claim(None, NOW - timedelta(seconds=129), True, NOW, STALE)
    assert held == FbAlbumClaim(None, False, False, uncertain=True)


def test_a_lapsed_claim_is_taken_over_and_the_taker_looks_first() -> None:
    for uncertain in (False, True):
        taken = decide_claim(None, NOW - STALE, uncertain, NOW, STALE)
        assert taken == FbAlbumClaim(None, True, True)
