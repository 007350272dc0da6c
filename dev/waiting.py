"""Waiting for a condition, bounded: what tests, the bench and the chaos harness do instead of
sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    every: float = 0.05,
    what: str = "condition",
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll until `check` returns something truthy and return it; TimeoutError after `timeout`.

    An exception of a `tolerate` type counts as "not yet" (a process still starting or
    restarting refuses the probe); any other propagates.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except tolerate:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
