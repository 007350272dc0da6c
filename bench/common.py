"""What every measurement shares: paths, the broker's management API, processes, waits, rows."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pika

# Re-exported (`as`): the bench modules take them from here.
from dev.ports import answers as answers
from dev.ports import free_port as free_port
from dev.rabbit_admin import Broker as Broker
from dev.waiting import wait_for as wait_for

ROOT = Path(__file__).resolve().parents[1]
#: Scratch output (logs, databases, the second node's data): gitignored, never committed.
VAR = ROOT / "var" / "bench"
#: The committed output: small on purpose, it is shown in the README.
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
BIN = Path(PY).parent

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    quick: bool
    amqp_url: str
    management_url: str
    store: str  # "sqlite" or "postgres"
    postgres_url: str
    profile: bool


@dataclass
class Row:
    """One line of the table, plus the raw figures that go to the JSON file."""

    id: str
    what: str
    ours: str
    reference: str
    goal: str
    met: bool
    ratio: float | None
    dramatiq: str = "-"
    celery: str = "-"
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def failed(cls, row_id: str, what: str, exc: BaseException) -> Row:
        """The row of a measurement that could not be taken, saying why."""
        return cls(
            id=row_id,
            what=what,
            ours="error",
            reference="-",
            goal="-",
            met=False,
            ratio=None,
            note=f"the measurement failed: {type(exc).__name__}: {exc}",
        )


# -- the broker ------------------------------------------------------------------------------


def blocking(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


class QueueWatch:
    """Reads a queue's ready count over one kept-open connection (a passive declare is exact,
    unlike the management API's counts, which lag by the statistics interval)."""

    def __init__(self, url: str, queue: str) -> None:
        self._connection = blocking(url)
        self._channel = self._connection.channel()
        self._queue = queue

    def ready(self) -> int:
        return int(self._channel.queue_declare(self._queue, passive=True).method.message_count)

    def consumers(self) -> int:
        return int(self._channel.queue_declare(self._queue, passive=True).method.consumer_count)

    def drain_window(self, total: int, timeout: float, every: float = 0.002) -> tuple[float, float]:
        """(first take, queue empty) in monotonic seconds: from the moment a consumer took the
        first of `total` messages to the moment none is left ready. Startup is outside the
        window. The (time, ready) samples stay in `samples` for `rates_by_depth`."""
        deadline = time.monotonic() + timeout
        started = None
        self.samples: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            ready = self.ready()
            now = time.monotonic()
            if ready <= total:
                self.samples.append((now, ready))
            if started is None and ready < total:
                started = now
            if ready == 0 and started is not None:
                return started, now
            time.sleep(every)
        raise TimeoutError(f"{self._queue} not drained within {timeout} s ({self.ready()} left)")

    def rates_by_depth(self, total: int, parts: int = 5) -> list[float]:
        """Messages per second while the queue went from full to empty, in `parts` equal
        slices of depth (first: the deepest): tells a backlog's cost from noise."""
        rates: list[float] = []
        for part in range(parts):
            high, low = total * (parts - part) / parts, total * (parts - part - 1) / parts
            inside = [t for t, ready in self.samples if low <= ready <= high]
            if len(inside) >= 2 and inside[-1] > inside[0]:
                rates.append(float(round((high - low) / (inside[-1] - inside[0]))))
        return rates

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


# -- processes --------------------------------------------------------------------------------


class Proc:
    """A child process with its output in var/bench/<name>.log; stopped by pid, never by name."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        VAR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = VAR / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - the child's output
        self.process = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            text=False,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def py_spy(pid: int, name: str, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    """Record `pid` (and its children) with py-spy until it exits or is stopped: collapsed
    stacks of every thread, idle ones too, in var/bench/<name>.pyspy.txt (for --profile)."""
    args = [
        str(BIN / "py-spy"),
        "record",
        "-p",
        str(pid),
        "-r",
        "250",
        "--threads",
        "--idle",
        "--nonblocking",
        "-f",
        "raw",
        "-o",
        str(VAR / f"{name}.pyspy.txt"),
    ]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    """py-spy writes its file on SIGINT, as on Ctrl-C."""
    if profiler is None or profiler.poll() is not None:
        return
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()


def base_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


# -- small helpers ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 300 samples is the 297th, a real observed value."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
