"""A circuit breaker for the Graph API: when most calls of the last minute failed, stop
uploading for a while instead of burning every image's retries, then try again by itself."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from shared.observability import metrics


class CircuitBreaker:
    def __init__(
        self,
        window_s: float = 60.0,
        min_calls: int = 10,
        failure_ratio: float = 0.5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._min_calls = min_calls
        self._failure_ratio = failure_ratio
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._calls: deque[tuple[float, bool]] = deque()
        self._open_until = 0.0
        self._lock = threading.Lock()

    def record(self, ok: bool) -> None:
        with self._lock:
            now = self._clock()
            self._calls.append((now, ok))
            while self._calls and self._calls[0][0] < now - self._window_s:
                self._calls.popleft()
            failures = sum(1 for _, good in self._calls if not good)
            if len(self._calls) >= self._min_calls and failures >= self._failure_ratio * len(
                self._calls
            ):
                self._open_until = now + self._cooldown_s
                metrics.BREAKER_OPEN.set(1)
                # After the pause the breaker judges fresh calls only.
                self._calls.clear()

    def open_for(self) -> float:
        """Seconds until the breaker lets calls through again (0 when closed)."""
        with self._lock:
            remaining = max(0.0, self._open_until - self._clock())
        metrics.BREAKER_OPEN.set(1 if remaining > 0 else 0)
        return remaining

    def wait_while_open(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block the calling upload until the breaker closes; returns how long it waited."""
        waited = 0.0
        while (remaining := self.open_for()) > 0:
            step = min(remaining, 1.0)
            sleep(step)
            waited += step
        return waited
