"""The Dramatiq side of P2: `dramatiq bench.p2_dramatiq` runs a no-op actor on BENCH_QUEUE."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from bench.gate import wait_for_go
from bench.peers import dramatiq_broker


class WaitForGo(Middleware):  # type: ignore[misc]
    """Hold each worker process before its consumers start (see bench/gate.py)."""

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        wait_for_go()


broker = dramatiq_broker(
    os.environ.get("BENCH_AMQP_URL", "amqp://127.0.0.1"), confirm_delivery=False
)
broker.add_middleware(WaitForGo())
dramatiq.set_broker(broker)


# dramatiq is untyped to mypy (the dev venv, where mypy runs, does not install it).
@dramatiq.actor(  # type: ignore[untyped-decorator]
    actor_name="noop", queue_name=os.environ.get("BENCH_QUEUE", "bench.drain")
)
def noop(*_args: Any) -> None:
    return None
