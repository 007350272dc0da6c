"""A publisher for unit tests: keeps what it was asked to publish, or fails as told.

Same calls as `shared.broker.publisher.Publisher`, no pika and no broker.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shared.broker.errors import BrokerError
from shared.contracts.outgoing import Outgoing


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Outgoing] = []
        #: Raised by each publish while set (a broker away, a confirm that never came).
        self.failure: BrokerError | None = None
        self._lock = threading.Lock()

    def publish_confirmed(
        self, messages: Sequence[Outgoing], timeout: float = 10.0, connect_wait: float = 2.0
    ) -> None:
        if not messages:
            return
        if self.failure is not None:
            raise self.failure
        with self._lock:
            self.published.extend(messages)

    def publish_outcomes(
        self, messages: Sequence[Outgoing], timeout: float = 10.0, connect_wait: float = 2.0
    ) -> list[BaseException | None]:
        """Each message's outcome: all kept, or all failed with `failure` while it is set."""
        if self.failure is not None:
            return [self.failure] * len(messages)
        with self._lock:
            self.published.extend(messages)
        return [None] * len(messages)

    def connected(self, wait_s: float = 0.0) -> bool:
        """Connected unless a failure is set (as a broker that is away)."""
        return self.failure is None

    def to(self, exchange: str) -> list[Outgoing]:
        """What went to `exchange`, in order."""
        with self._lock:
            return [m for m in self.published if m.exchange == exchange]

    def close(self) -> None:
        pass
