"""Delay tiers are named so that they sort by their delay in the management UI and `list_queues`."""

import pytest
from pydantic import ValidationError

from shared.config.settings import CommonSettings
from shared.contracts import topology


def test_tier_names_sort_by_their_delay() -> None:
    delays = topology.retry_tiers((1, 5, 30, 120, 600, 3600, 79999))
    names = [topology.retry_queue_name(topology.IMAGE_UPLOADS, d) for d in delays]
    assert sorted(names) == names


def test_a_tier_name_pads_its_seconds_to_five_digits() -> None:
    assert (
        topology.retry_queue_name(topology.IMAGE_UPLOADS, 5)
        == "uploader.image-uploads.retry.00005s"
    )


def test_a_delay_whose_twin_would_need_six_digits_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="at most 79999"):
        CommonSettings(retry_delays=(5, 80000))


def test_the_unpadded_names_of_older_versions_are_stale_tiers() -> None:
    old = "uploader.image-uploads.retry.5s"
    assert topology.stale_retry_queues([old], (5,)) == [old]
