"""Readiness: whether a process can do its work now, as named checks that each say what failed.

Liveness (/healthz) asks only whether the process answers: a dependency that is down must not
get a healthy process restarted. Readiness (/readyz) asks whether the broker and the store can
be used now; an orchestrator routes no traffic to (and compose reports unhealthy) a process
that is not ready, and it becomes ready again by itself once they are back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import text

from shared.store import Store

#: A check: None when ready, else why not (one short line, no secrets).
Check = Callable[[], "str | None"]


class Consuming(Protocol):
    """A consumer's state, as `shared.broker.consumer.Consumer` keeps it."""

    consuming: threading.Event


def store_reachable(store: Store) -> Check:
    def check() -> str | None:
        try:
            with store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # reported, not raised: this is what the check is for
            return f"store unavailable: {type(exc).__name__}"
        return None

    return check


def consumers_consuming(consumers: Sequence[tuple[str, Consuming]]) -> Check:
    """Every consumer holds a broker connection and consumes its queue now."""

    def check() -> str | None:
        idle = [queue for queue, consumer in consumers if not consumer.consuming.is_set()]
        return f"not consuming {', '.join(idle)} (broker unreachable?)" if idle else None

    return check


def service_checks(store: Store, consumers: Sequence[tuple[str, Consuming]]) -> dict[str, Check]:
    """A consumer service's readiness: its store answers, and its consumers consume."""
    return {"store": store_reachable(store), "broker": consumers_consuming(consumers)}


def evaluate(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    """Run every check; whether all passed, and each one's result ("ok" or why not)."""
    results = {name: check() or "ok" for name, check in checks.items()}
    return all(result == "ok" for result in results.values()), results


def readiness_body(checks: Mapping[str, Check]) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of /readyz: 200 when every check passes, else 503."""
    ready, results = evaluate(checks)
    return (200 if ready else 503), {"status": "ready" if ready else "not ready", "checks": results}
