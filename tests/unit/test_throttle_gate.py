"""The throttle gate on a fake store: holds recorded per scope, a held Page raises Throttled
with the time left, and a store that cannot record never fails the answer Facebook gave."""

from __future__ import annotations

import json
from collections.abc import Collection

import pytest

from services.uploader.throttle_gate import ThrottleGate
from services.uploader.usage import APP
from shared.contracts.outcomes import Throttled

PAGE = "p1"


class FakeHolds:
    def __init__(self, fail: bool = False) -> None:
        self.holds: dict[str, float] = {}
        self.fail = fail

    def hold_graph(self, scope: str, seconds: float) -> None:
        if self.fail:
            raise ConnectionError("store away")
        self.holds[scope] = max(self.holds.get(scope, 0.0), seconds)

    def graph_held_for(self, scopes: Collection[str]) -> float:
        return max((self.holds.get(scope, 0.0) for scope in scopes), default=0.0)


def gate(store: FakeHolds) -> ThrottleGate:
    return ThrottleGate(store, PAGE, threshold_pct=90, pause_s=60)  # type: ignore[arg-type]


def test_usage_over_the_threshold_holds_the_page_and_the_app() -> None:
    store = FakeHolds()
    gate(store).record(
        {
            "X-Page-Usage": json.dumps({"call_count": 95}),
            "X-App-Usage": json.dumps({"call_count": 91}),
        }
    )
    assert store.holds == {PAGE: 60, APP: 60}


def test_a_held_page_raises_throttled_with_the_time_left() -> None:
    store = FakeHolds()
    store.holds[PAGE] = 5400
    with pytest.raises(Throttled) as raised:
        gate(store).check()
    assert raised.value.failure.wait_s == 5400


def test_nothing_held_lets_the_upload_through() -> None:
    gate(FakeHolds()).check()


def test_a_store_that_cannot_record_never_fails_the_answer() -> None:
    gate(FakeHolds(fail=True)).record({"X-Page-Usage": json.dumps({"call_count": 99})})
