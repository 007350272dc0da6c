"""A full bench run measures P1 and P3 on each store; one store's failed pass keeps the other's
rows and says what failed."""

from __future__ import annotations

from bench.common import Options, Row
from bench.system import on_each_store


def _opts(quick: bool) -> Options:
    return Options(quick, "amqp://", "http://", "sqlite", "postgresql://", False)


def _measure(opts: Options) -> list[Row]:
    if opts.store == "postgres":
        raise ConnectionError("no PostgreSQL here")
    return [Row("P3", f"measured on {opts.store}", "1 s", "-", "-", True, 1.0)]


def test_a_full_run_keeps_sqlites_rows_when_postgresql_fails() -> None:
    sqlite, failed = on_each_store(_opts(quick=False), "P3", "album of 20", _measure)
    assert (sqlite.what, sqlite.met) == ("measured on sqlite", True)
    assert (failed.id, failed.what, failed.ours, failed.met) == (
        "P3",
        "album of 20, store: PostgreSQL",
        "error",
        False,
    )
    assert "ConnectionError: no PostgreSQL here" in failed.note


def test_a_quick_run_measures_the_store_it_names_only() -> None:
    (row,) = on_each_store(_opts(quick=True), "P3", "album of 20", _measure)
    assert row.what == "measured on sqlite"
