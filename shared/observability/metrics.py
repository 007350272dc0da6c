"""The Prometheus metrics every service exposes, and how a process serves them on /metrics.

Counters and histograms live in the process that did the work: the consumer runtime counts
each message's fate once (`count_fate`), the uploader the bytes it sent, the notifier its
emails. What the store knows (albums waiting, the outbox, leases, throttle holds) is read at
scrape time by `shared.observability.store_metrics`, so every process reports the same figures.

Several uploader processes (UPLOADER_PROCESSES > 1) share one port: the parent makes a
directory for prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set in the
children's environment before they import this module) and serves their sum. One port per
process would leave the summing to every query and change with the process count.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)

# A `_created` series beside each counter and histogram doubles what is scraped for no panel.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

#: The environment variable prometheus-client's multiprocess mode reads.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

JOBS = Counter(
    "albums_jobs",
    "Messages a consumer finished, by queue and outcome "
    "(done, retried, throttled, dead_lettered, outage, held) and the Graph or "
    "SMTP error code",
    ["queue", "outcome", "code"],
)
JOB_SECONDS = Histogram(
    "albums_job_duration_seconds",
    "Time from taking a message to its fate",
    ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BYTES_SENT = Counter("albums_upload_bytes", "Photo bytes streamed to Facebook")
PUBLISH_TO_SETTLE = Histogram(
    "albums_publish_to_settle_seconds",
    "Time from an album's publish to its settle (at its email)",
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 14400),
)
SWEEPER_RESENDS = Counter("albums_sweeper_resends", "Upload messages the sweeper sent again")
EMAILS = Counter("albums_emails", "Album emails, by outcome (sent, failed)", ["outcome"])
for _outcome in ("sent", "failed"):
    EMAILS.labels(_outcome)
BREAKER_OPEN = Gauge(
    "albums_circuit_breaker_open",
    "1 while an uploader process's Graph circuit breaker is open",
    multiprocess_mode="livemax",
)


#: Outcomes whose series exist from a consumer's start, at 0: a rate needs the zero before
#: the first message (a series born at 1 would hide that message from `rate` and `increase`).
_USUAL_OUTCOMES = ("done", "retried", "throttled", "dead_lettered")


def declare_queue(queue: str) -> None:
    """Start the queue's usual series at 0."""
    for outcome in _USUAL_OUTCOMES:
        JOBS.labels(queue, outcome, "")
    JOB_SECONDS.labels(queue)


def count_fate(queue: str, outcome: str, code: int | None, seconds: float) -> None:
    """One message's fate: a counter increment and an observation, nothing more."""
    JOBS.labels(queue, outcome, "" if code is None else str(code)).inc()
    JOB_SECONDS.labels(queue).observe(seconds)


def forget_process(pid: int) -> None:
    """In a multiprocess parent: a child exited, so its live gauges (the breaker) stop counting;
    its counters stay in the sum."""
    if figures := os.environ.get(MULTIPROC_DIR):
        mark_process_dead(pid, figures)  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated


def serve(port: int, addr: str = "127.0.0.1", *extra: Collector) -> Any:
    """Serve /metrics on `addr:port` from a daemon thread (port 0: nothing is served). In a
    multiprocess parent, the sum of its children's files; `extra` collectors join either."""
    if port == 0:
        return None
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    else:
        registry = REGISTRY
    for collector in extra:
        registry.register(collector)
    try:
        return start_http_server(port, addr, registry=registry)
    except OSError as exc:  # the work matters more than its figures: keep running
        log.error("/metrics not served on %s:%d: %s", addr, port, exc)
        return None
