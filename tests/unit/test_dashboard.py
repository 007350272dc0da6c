"""The Grafana dashboard charts every metric the services expose, and only those."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from shared.observability import metrics
from shared.observability.store_metrics import StoreCollector
from shared.store.views import StoreFigures

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "album-publisher.json"


class Figures:
    def figures(self) -> StoreFigures:
        return StoreFigures(1, 2.0, 0, 3, 4.0, {"123": 5.0})


def exposed() -> set[str]:
    """Every albums_* family name the services can serve (counters without `_total`)."""
    metrics.declare_queue("q")
    store = CollectorRegistry()
    store.register(StoreCollector(Figures()))  # type: ignore[arg-type]
    text = generate_latest(REGISTRY).decode() + generate_latest(store).decode()
    return {
        re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (albums_\w+) ", text, re.M)
    }


def charted() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = " ".join(t["expr"] for panel in panels for t in panel["targets"])
    names = set(re.findall(r"albums_\w+", exprs))
    return {re.sub(r"(_total|_bucket)$", "", name) for name in names}


def test_every_exposed_metric_has_a_panel_and_every_panel_a_metric() -> None:
    assert charted() == exposed()


def test_the_dashboard_charts_the_brokers_queue_depths() -> None:
    assert "rabbitmq_detailed_queue_messages" in DASHBOARD.read_text()
