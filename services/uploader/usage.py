"""Facebook's usage headers, read from every Graph answer, and what they ask of us.

`X-App-Usage` and `X-Page-Usage` are JSON objects of percentages (`call_count`, `total_cputime`,
`total_time`); Facebook throttles once any reaches 100. `X-Business-Use-Case-Usage` maps a Page
id to a list of entries with the same percentages and `estimated_time_to_regain_access` in
minutes (0: not blocked). Sources: docs/facebook-throttling.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The scope of a hold on the whole app (every Page).
APP = "app"
_PERCENTAGES = ("call_count", "total_cputime", "total_time")


@dataclass(frozen=True)
class Usage:
    """The highest percentage each scope reported, and the Page's regain time (seconds)."""

    app_pct: float | None = None
    page_pct: float | None = None
    regain_s: float | None = None


def read_usage(headers: Mapping[str, str]) -> Usage:
    """The usage an answer reports; a header that is missing or malformed reports nothing."""
    page_entries = _buc_entries(headers.get("X-Business-Use-Case-Usage"))
    page_pcts = [
        _highest(_json_object(headers.get("X-Page-Usage"))),
        *(_highest(entry) for entry in page_entries),
    ]
    regains = [
        float(entry["estimated_time_to_regain_access"]) * 60
        for entry in page_entries
        if _is_number(entry.get("estimated_time_to_regain_access"))
    ]
    return Usage(
        app_pct=_highest(_json_object(headers.get("X-App-Usage"))),
        page_pct=max((p for p in page_pcts if p is not None), default=None),
        regain_s=max(regains, default=None),
    )


def holds(usage: Usage, page_id: str, threshold_pct: float, pause_s: float) -> dict[str, float]:
    """Seconds each scope (the Page id, `APP`) must not be sent to: the regain time Facebook
    named, in full, or `pause_s` for a scope at or above `threshold_pct` (slow down before
    Facebook throttles)."""
    wanted: dict[str, float] = {}
    if usage.page_pct is not None and usage.page_pct >= threshold_pct:
        wanted[page_id] = pause_s
    if usage.regain_s is not None and usage.regain_s > 0:
        wanted[page_id] = max(wanted.get(page_id, 0.0), usage.regain_s)
    if usage.app_pct is not None and usage.app_pct >= threshold_pct:
        wanted[APP] = pause_s
    return wanted


def _json_object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _buc_entries(raw: str | None) -> list[dict[str, Any]]:
    usage = _json_object(raw) or {}
    return [
        entry
        for entries in usage.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]


def _highest(fields: Mapping[str, Any] | None) -> float | None:
    values = [
        float(fields[name])
        for name in _PERCENTAGES
        if fields is not None and _is_number(fields.get(name))
    ]
    return max(values, default=None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
