"""The Celery side of P2: `celery -A bench.p2_celery worker` runs a no-op task on BENCH_QUEUE."""

from __future__ import annotations

import os
from typing import Any

from celery import signals

from bench.gate import wait_for_go
from bench.peers import celery_app

app = celery_app(
    os.environ.get("BENCH_AMQP_URL", "amqp://127.0.0.1"),
    os.environ.get("BENCH_QUEUE", "bench.drain"),
    confirm_publish=False,
)


# celery is untyped to mypy (the dev venv, where mypy runs, does not install it).
@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(*_args: Any) -> None:
    return None


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _hold(**_kwargs: Any) -> None:
    # Before the consumer connects: every worker process starts taking messages together.
    wait_for_go()
