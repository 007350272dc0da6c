"""The database server's clock, for times several hosts compare (claims): their own clocks
differ, the database's is one.

`utc_now()` is an SQL expression for the current UTC time, naive like the store's columns. On
PostgreSQL it is `clock_timestamp()`, not `now()`: `now()` is when the transaction began, which
for a claim that first waited on a row lock is earlier than the claim itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, DateTime, Float, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class utc_now(FunctionElement[datetime]):  # noqa: N801 - an SQL function, named like one
    type = DateTime()
    inherit_cache = True


@compiles(utc_now, "postgresql")
def _postgresql(_element: utc_now, _compiler: Any, **_kw: Any) -> str:
    return "timezone('UTC', clock_timestamp())"


@compiles(utc_now)
def _sqlite(_element: utc_now, _compiler: Any, **_kw: Any) -> str:
    # SQLite runs in this process, so its clock is this host's; milliseconds, in UTC.
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class utc_now_plus(FunctionElement[datetime]):  # noqa: N801 - an SQL function, named like one
    """`utc_now()` shifted by a number of seconds (negative: earlier), in the statement itself,
    so that a single statement can compare against, and write, times of the database's clock."""

    type = DateTime()
    inherit_cache = True

    def __init__(self, seconds: float | BindParameter[float]) -> None:
        """`seconds`: a number, or a parameter bound when the statement runs (a statement
        built once: `image_take`)."""
        if not isinstance(seconds, BindParameter):
            seconds = bindparam(None, float(seconds), Float())
        super().__init__(seconds)


@compiles(utc_now_plus, "postgresql")
def _postgresql_plus(element: utc_now_plus, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"timezone('UTC', clock_timestamp()) + make_interval(secs => {seconds})"


@compiles(utc_now_plus)
def _sqlite_plus(element: utc_now_plus, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {seconds}))"
