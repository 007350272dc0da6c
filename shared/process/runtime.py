"""Process plumbing the services share: logging and signals."""

from __future__ import annotations

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
