"""A job a service runs every few seconds beside its consumers (the lost-message sweeper, the
dead-letter drain, the reconnect mails): one daemon thread, until `stop` is set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def start_periodic(
    name: str, job: Callable[[], object], stop: threading.Event, every_s: float
) -> threading.Thread:
    """Run `job` every `every_s` seconds on a thread called `name`. A round that fails is
    logged and the next one runs as usual: the broker or the store may be away a moment, and
    each job picks up where the last finished round left off."""

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                job()
            except Exception:
                log.exception("%s: this round failed; the next one retries", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
