"""The API raises its open-file limit for its connections, within the hard limit (issue 11)."""

from __future__ import annotations

import resource

from services.api.file_limits import RESERVED, plan


def test_a_low_soft_limit_is_raised_for_the_connections() -> None:
    assert plan(1024, 524288, 1000) == (1000 + RESERVED, 1000)


def test_a_soft_limit_already_high_enough_is_left_alone() -> None:
    assert plan(20000, 20000, 1000) == (20000, 1000)
    assert plan(resource.RLIM_INFINITY, resource.RLIM_INFINITY, 1000) == (
        resource.RLIM_INFINITY,
        1000,
    )


def test_a_hard_limit_too_low_caps_the_connections() -> None:
    assert plan(256, 512, 1000) == (512, 512 - RESERVED)


def test_an_unlimited_hard_limit_raises_the_soft_one_as_far_as_needed() -> None:
    assert plan(1024, resource.RLIM_INFINITY, 5000) == (5000 + RESERVED, 5000)
