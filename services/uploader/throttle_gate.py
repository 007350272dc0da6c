"""Throttling shared by every uploader process, per Page and per app, kept in the store.

Each Graph answer's usage headers are read (`usage.read_usage`); a scope at or above the
threshold is held for a pause, and a Page whose regain time Facebook named is held until then
(`Store.hold_graph`, on the database's clock). Before an upload streams anything, the handler
asks the gate: a held Page or app raises `Throttled` with the time left, which the runtime waits
out in the delay tiers without spending an attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from services.uploader import usage
from shared.contracts.outcomes import Throttled
from shared.store import Store

log = logging.getLogger(__name__)


class ThrottleGate:
    def __init__(
        self, store: Store, page_id: str, threshold_pct: float = 90.0, pause_s: float = 60.0
    ) -> None:
        self._store = store
        self._page_id = page_id
        self._threshold_pct = threshold_pct
        self._pause_s = pause_s

    def record(self, headers: Mapping[str, str]) -> None:
        """The Graph client's hook on every answer. Never raises: an answer Facebook gave must
        not turn into a failed upload because the store is away."""
        wanted = usage.holds(
            usage.read_usage(headers), self._page_id, self._threshold_pct, self._pause_s
        )
        for scope, seconds in wanted.items():
            try:
                self._store.hold_graph(scope, seconds)
            except Exception:  # noqa: BLE001 - logged; the next answer says it again
                log.warning("could not record a %.0f s hold on %s", seconds, scope, exc_info=True)
            else:
                log.info("Facebook usage: holding uploads to %s for %.0f s", scope, seconds)

    def scopes(self, page_id: str | None = None) -> tuple[str, str]:
        """The scopes an upload to the Page (`page_id`, else the gate's own) waits for: the
        Page's and the app's."""
        return (page_id or self._page_id, usage.APP)

    def check(self, page_id: str | None = None) -> None:
        """Raise `Throttled` while the Page (`page_id`, else the gate's own) or the app is
        held."""
        held = self._store.graph_held_for(self.scopes(page_id))
        if held > 0:
            raise Throttled(
                f"Facebook's usage limit for this Page is near or reached; "
                f"uploads wait {held:.0f} s",
                wait_s=held,
            )
