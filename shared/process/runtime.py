"""Process plumbing the services share: logging, signals, and the heap a service starts with."""

from __future__ import annotations

import gc
import logging
import signal
import threading

from shared.observability import log_format

log = logging.getLogger(__name__)


def setup_logging(level: str, service: str, fmt: log_format.Format | None = None) -> None:
    """Log to stderr at `level`, as JSON lines or text (`log_format.choose`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_format.formatter(log_format.choose(fmt), service))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("pika").setLevel(logging.WARNING)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the process finishes its work and exits 0."""
    stop = threading.Event()

    def _handle(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    return stop


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive now out of the collector's sight, as a
    service has finished starting and before it serves.

    What a service loads at start (botocore's service models, SQLAlchemy, Flask, pydantic)
    lives as long as the process, yet CPython's full collection walks all of it each time: 55
    to 190 ms here, during which no thread of the process runs. The API met one every few
    hundred requests (issue 14's P1, measured with gc.callbacks); frozen, the same collections
    take about 2 ms. Python documentation, "gc.freeze",
    https://docs.python.org/3/library/gc.html#gc.freeze. The collect first frees the garbage
    start left behind: frozen, it would stay. What start built and later drops (a connection
    replaced after an outage) stays too if it is in a reference cycle: a bounded cost, paid
    once per process."""
    gc.collect()
    gc.freeze()
