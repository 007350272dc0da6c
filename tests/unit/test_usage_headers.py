"""Facebook's usage headers (services/uploader/usage.py): parsed, and turned into holds."""

from __future__ import annotations

import json

from services.uploader.usage import APP, Usage, holds, read_usage

PAGE = "1000000000000001"


def buc(pct: float, minutes: float) -> str:
    return json.dumps(
        {
            PAGE: [
                {
                    "type": "pages",
                    "call_count": pct,
                    "total_cputime": 1,
                    "total_time": 1,
                    "estimated_time_to_regain_access": minutes,
                }
            ]
        }
    )


def test_all_three_headers_are_read_as_percentages_and_minutes() -> None:
    usage = read_usage(
        {
            "X-App-Usage": json.dumps({"call_count": 28, "total_cputime": 91, "total_time": 5}),
            "X-Page-Usage": json.dumps({"call_count": 40, "total_cputime": 1, "total_time": 1}),
            "X-Business-Use-Case-Usage": buc(95, 90),
        }
    )
    assert usage == Usage(app_pct=91, page_pct=95, regain_s=5400)


def test_missing_or_malformed_headers_report_nothing() -> None:
    assert read_usage({}) == Usage()
    assert (
        read_usage(
            {
                "X-App-Usage": "not json",
                "X-Page-Usage": "[1]",
                "X-Business-Use-Case-Usage": json.dumps({PAGE: "x"}),
            }
        )
        == Usage()
    )


def test_a_page_above_the_threshold_is_slowed_and_the_app_too() -> None:
    assert holds(Usage(app_pct=92, page_pct=95), PAGE, 90, 60) == {PAGE: 60, APP: 60}
    assert holds(Usage(app_pct=50, page_pct=89), PAGE, 90, 60) == {}


def test_a_regain_time_is_held_in_full() -> None:
    assert holds(Usage(page_pct=100, regain_s=5400), PAGE, 90, 60) == {PAGE: 5400}
    assert holds(Usage(regain_s=0), PAGE, 90, 60) == {}  # 0: not blocked
