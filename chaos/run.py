"""One row: a fresh system on the run's node, the fault, the wait, the ledger."""

from __future__ import annotations

import random
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pika
import requests

from chaos.faults import Context, Scenario
from chaos.ledger import Row, check, settle
from chaos.system import System
from chaos.workload import Workload
from dev.rabbit_node import Broker
from shared.broker.connection import parameters
from shared.contracts import topology


def run_row(node: Broker, scenario: Scenario, seed: int, quick: bool, workdir: Path) -> Row:
    row = Row(scenario.name, seed)
    began = time.monotonic()
    system = System(node, workdir / scenario.name, scenario.settings)
    lap = _Lap(row)
    try:
        _ensure_node(node)
        system.start()
        rng = random.Random(f"{seed}:{scenario.name}")
        work = Workload(system, rng, system.create_user(f"chaos-{scenario.name}@example.com"))
        ctx = Context(system, work, rng, quick, row)
        lap("start")
        try:
            scenario.run(ctx)
        finally:
            heal(system)
            lap("fault")
        settle(system, work, 90 if quick else 180, ctx.expect.settles)
        lap("settle")
        check(row, system, work, ctx.expect)
        lap("check")
    except Exception as exc:  # a harness failure fails the row, with its trace kept
        row.problems.append(f"harness: {type(exc).__name__}: {exc}")
        (system.workdir / "harness.log").write_text(traceback.format_exc())
    finally:
        try:
            heal(system)
        finally:
            system.stop()
            lap("stop")
    row.seconds = time.monotonic() - began
    return row


class _Lap:
    def __init__(self, row: Row) -> None:
        self._row = row
        self._last = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self._row.phases[phase] = round(now - self._last, 1)
        self._last = now


def heal(system: System) -> None:
    """Undo every fault a row may have left: the next step must see a healthy world."""
    for proxy in system.proxies.values():
        proxy.restore()
    _ensure_node(system.node)
    undos: tuple[Callable[[], None], ...] = (system.graph_faults, lambda: system.smtp_reply(None))
    for undo in undos:
        try:
            undo()
        except requests.RequestException:
            pass
    # Re-declaring puts back a binding a row deleted (declare is idempotent).
    connection = pika.BlockingConnection(parameters(system.amqp_url))
    try:
        retry_delays = [int(d) for d in system.env["RETRY_DELAYS"].split(",")]
        topology.declare(connection.channel(), retry_delays)
    finally:
        connection.close()


def _ensure_node(node: Broker) -> None:
    node.signal(signal.SIGCONT)
    if node.pid is None:
        node.start()
