"""The store's Graph holds (per Page and "app"), on SQLite and PostgreSQL, by the database's
clock: a longer hold is never shortened, and scopes not asked about do not count."""

from __future__ import annotations

import pytest

from shared.store import Store

pytestmark = pytest.mark.integration


def test_a_hold_lasts_its_time_and_only_grows(store: Store) -> None:
    assert store.graph_held_for(("page-1", "app")) == 0
    store.hold_graph("page-1", 5400)
    store.hold_graph("page-1", 60)  # a shorter pause later does not cut the regain time
    assert 5390 < store.graph_held_for(("page-1", "app")) <= 5400
    assert store.graph_held_for(("page-2",)) == 0
    store.hold_graph("app", 7200)
    assert 7190 < store.graph_held_for(("page-2", "app")) <= 7200
