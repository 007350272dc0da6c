"""The store's gauges, read at scrape time: every process reads the same rows, so the figures
agree wherever they are scraped and nothing drifts between scrapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.store import Store

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self._store.figures()
        except Exception:  # the store is away: the scrape still answers, without these
            log.warning("could not read the store's figures for /metrics", exc_info=True)
            return
        yield _gauge(
            "albums_publishing", "Albums publishing (not settled yet)", figures.albums_publishing
        )
        yield _gauge(
            "albums_oldest_publishing_age_seconds",
            "Age of the oldest album still publishing",
            figures.oldest_publishing_age_s,
        )
        yield _gauge(
            "albums_images_uploading_past_lease",
            "Images in `uploading` whose lease ran out",
            figures.uploading_past_lease,
        )
        yield _gauge(
            "albums_outbox_backlog", "Outbox rows not yet published", figures.outbox_backlog
        )
        yield _gauge(
            "albums_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row",
            figures.outbox_oldest_age_s,
        )
        holds = GaugeMetricFamily(
            "albums_throttle_hold_seconds",
            "Seconds a Page (or the app) is still held for Facebook's throttling",
            labels=["scope"],
        )
        for scope, seconds in sorted(figures.holds.items()):
            holds.add_metric([scope], seconds)
        yield holds


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
