"""How many live-progress streams each user holds open in this process.

API_SSE_STREAMS bounds a process's streams (each holds a thread); this bounds one user's share
of them (API_SSE_STREAMS_PER_USER), so that one user with many tabs or a script cannot take
every slot. Per process, like the slots: a user's streams spread over the processes.
"""

from __future__ import annotations

import threading


class LiveStreams:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}

    def take(self, user_id: int) -> bool:
        """Count one more open stream of the user's, unless they hold `per_user` already."""
        with self._lock:
            held = self._open.get(user_id, 0)
            if held >= self.per_user:
                return False
            self._open[user_id] = held + 1
            return True

    def give_back(self, user_id: int) -> None:
        with self._lock:
            held = self._open.get(user_id, 0) - 1
            if held > 0:
                self._open[user_id] = held
            else:
                self._open.pop(user_id, None)
