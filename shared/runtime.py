"""Process plumbing the services share: logging, signals, and the wait for a broker."""

from __future__ import annotations

import logging
import signal
import threading

from shared.broker.connection import declare_topology
from shared.broker.errors import BrokerError
from shared.settings import CommonSettings

log = logging.getLogger(__name__)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def try_declare(settings: CommonSettings) -> bool:
    """Declare the topology once; False (logged) if the broker is not reachable now."""
    try:
        declare_topology(settings)
        return True
    except BrokerError as exc:
        log.warning("broker not reachable (%r); the topology is declared later", exc)
        return False
