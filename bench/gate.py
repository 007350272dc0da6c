"""A start line for worker processes: each says it is armed, then waits for the go.

Workers start at different speeds (imports, forks, Celery's boot steps); holding each one here
until all are armed makes them take their first message at about the same moment, so a drain
time measures consuming and not who booted first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

GO_ENV = "BENCH_GO"
ARMED_ENV = "BENCH_ARMED"


def wait_for_go() -> None:
    go = os.environ.get(GO_ENV)
    if not go:
        return
    Path(os.environ[ARMED_ENV], str(os.getpid())).touch()
    while not Path(go).exists():
        time.sleep(0.002)


class Gate:
    """The bench's side: a folder the workers mark, and the file that starts them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.armed = folder / "armed"
        self.go = folder / "go"
        self.armed.mkdir(parents=True, exist_ok=True)
        for mark in self.armed.iterdir():
            mark.unlink()
        self.go.unlink(missing_ok=True)

    def env(self) -> dict[str, str]:
        return {GO_ENV: str(self.go), ARMED_ENV: str(self.armed)}

    def armed_count(self) -> int:
        return sum(1 for _ in self.armed.iterdir())

    def open(self) -> None:
        self.go.touch()
