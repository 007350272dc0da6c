"""P2: drain 10,000 messages from a quorum queue with a no-op handler, 2 processes each.

Contenders: raw pika (BlockingConnection, manual acks), our `shared.broker.consumer.Consumer`,
Dramatiq (`dramatiq --processes 2 --threads N`) and Celery (two `celery worker -P threads -c N`).
All four take the same prefetch N per process (the uploader's default concurrency, 4).

The queue is filled before any worker starts; every worker then waits at a start line
(bench/gate.py). The drain is timed from the first message taken to the queue empty (exact
counts from a passive declare), so imports and boot steps are outside it.

`python -m bench.p2_consume raw|ours` is one worker process of the first two contenders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika

from bench.common import (
    BIN,
    PY,
    VAR,
    Broker,
    Options,
    Proc,
    QueueWatch,
    Row,
    base_env,
    blocking,
    log,
    py_spy,
    stop_profiler,
    wait_for,
)
from bench.gate import Gate, wait_for_go
from bench.peers import QUORUM, dramatiq_broker
from shared.contracts import messages, topology

QUEUE = "bench.drain"
PROCESSES = 2
PREFETCH = 4
DELIVERY_LIMIT = 20

Body = tuple[bytes, pika.BasicProperties]


@dataclass(frozen=True)
class Contender:
    name: str
    declare: Callable[[str], None]
    body: Callable[[int], Body]
    commands: list[list[str]]
    env: dict[str, str]


# -- what each contender's queue holds --------------------------------------------------------


def _ours_body(n: int) -> Body:
    body = messages.encode(
        messages.ImageUploadRequested(
            album_id=uuid.uuid4().hex, image_id=n + 1, key=f"users/1/bench/{n:05d}.png"
        )
    )
    return body, pika.BasicProperties(
        delivery_mode=2, content_type="application/json", message_id=uuid.uuid4().hex, headers={}
    )


def _declare_work_queue(url: str) -> None:
    connection = blocking(url)
    try:
        # The delivery limit is a policy in production; as an argument here it works the same.
        arguments = {**topology.work_queue_arguments(), "x-delivery-limit": DELIVERY_LIMIT}
        connection.channel().queue_declare(QUEUE, durable=True, arguments=arguments)
    finally:
        connection.close()


def _dramatiq_body(n: int) -> Body:
    from dramatiq import Message

    message: Any = Message(
        queue_name=QUEUE,
        actor_name="noop",
        options={},
        kwargs={},
        args=(uuid.uuid4().hex, n + 1, f"users/1/bench/{n:05d}.png"),
    )
    return message.encode(), pika.BasicProperties(delivery_mode=2)


def _dramatiq_declare(url: str) -> None:
    broker = dramatiq_broker(url, confirm_delivery=False)
    try:
        broker.declare_queue(QUEUE, ensure=True)
    finally:
        broker.close()


def _celery_body(n: int) -> Body:
    # The message `.delay()` would send (protocol 2), built once per message without Celery's
    # producer so the four queues fill the same way.
    task_id = str(uuid.uuid4())
    args = [uuid.uuid4().hex, n + 1, f"users/1/bench/{n:05d}.png"]
    headers: dict[str, Any] = {
        "lang": "py",
        "task": "bench.noop",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(tuple(args)),
        "kwargsrepr": "{}",
        "origin": "bench",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = json.dumps(
        [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    ).encode()
    return body, pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        content_encoding="utf-8",
        correlation_id=task_id,
        reply_to="",
        headers=headers,
    )


def _celery_declare(url: str) -> None:
    connection = blocking(url)
    try:
        channel = connection.channel()
        channel.exchange_declare(QUEUE, "direct", durable=True)
        channel.queue_declare(QUEUE, durable=True, arguments=QUORUM)
        channel.queue_bind(QUEUE, QUEUE, QUEUE)
    finally:
        connection.close()


def contenders(prefetch: int) -> list[Contender]:
    ours = [[PY, "-m", "bench.p2_consume", "ours"] for _ in range(PROCESSES)]
    raw = [[PY, "-m", "bench.p2_consume", "raw"] for _ in range(PROCESSES)]
    dramatiq = [
        [
            str(BIN / "dramatiq"),
            "bench.p2_dramatiq",
            "--processes",
            str(PROCESSES),
            "--threads",
            str(prefetch),
        ]
    ]
    celery = [
        [
            str(BIN / "celery"),
            "-A",
            "bench.p2_celery",
            "worker",
            "-P",
            "threads",
            "-c",
            str(prefetch),
            "-Q",
            QUEUE,
            "-n",
            f"bench{i}@%h",
            "-l",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
        for i in range(PROCESSES)
    ]
    return [
        Contender("raw pika", _declare_work_queue, _ours_body, raw, {}),
        Contender("ours", _declare_work_queue, _ours_body, ours, {}),
        Contender(
            "dramatiq",
            _dramatiq_declare,
            _dramatiq_body,
            dramatiq,
            {"dramatiq_queue_prefetch": str(prefetch)},
        ),
        Contender("celery", _celery_declare, _celery_body, celery, {}),
    ]


# -- one drain ---------------------------------------------------------------------------------


def fill(url: str, body: Callable[[int], Body], total: int) -> None:
    """Publish `total` messages without waiting on each confirm (the fill is not measured),
    then wait until the queue holds them all."""
    connection = blocking(url)
    try:
        channel = connection.channel()
        for n in range(total):
            payload, props = body(n)
            channel.basic_publish("", QUEUE, payload, props)
        watch = QueueWatch(url, QUEUE)
        try:
            wait_for(lambda: watch.ready() >= total, 60, what=f"{total} messages in {QUEUE}")
        finally:
            watch.close()
    finally:
        connection.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _with_descendants(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _with_descendants(pids: list[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except OSError:
                continue
    found = set(pids)
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def drain(
    opts: Options, broker: Broker, contender: Contender, total: int, prefetch: int
) -> dict[str, Any]:
    slug = contender.name.replace(" ", "-")
    with broker.vhost(f"p2-{slug}") as url:
        contender.declare(url)
        fill(url, contender.body, total)
        gate = Gate(VAR / f"p2-gate-{slug}")
        env = base_env(
            BENCH_AMQP_URL=url,
            BENCH_QUEUE=QUEUE,
            BENCH_PREFETCH=str(prefetch),
            **gate.env(),
            **contender.env,
        )
        procs = [
            Proc(f"p2-{slug}-{i}", command, env) for i, command in enumerate(contender.commands)
        ]
        profilers: list[subprocess.Popen[bytes]] = []
        watch = QueueWatch(url, QUEUE)
        try:
            wait_for(
                lambda: gate.armed_count() >= PROCESSES,
                60,
                what=f"{contender.name} workers at the start line",
            )
            if opts.profile and contender.name == "ours":
                profilers = [
                    py_spy(int(mark.name), f"p2-{slug}-{mark.name}")
                    for mark in gate.armed.iterdir()
                ]
            pids = [proc.pid for proc in procs]
            cpu_before = cpu_seconds(pids)
            gate.open()
            first, empty = watch.drain_window(total, timeout=300)
            cpu = cpu_seconds(pids) - cpu_before
        finally:
            watch.close()
            for proc in procs:
                proc.stop()
            for profiler in profilers:
                stop_profiler(profiler)
    seconds = empty - first
    return {
        "seconds": seconds,
        "rate": total / seconds,
        "cpu_s": cpu,
        "cpu_us_per_msg": cpu / total * 1e6,
        "rates_by_depth": watch.rates_by_depth(total),
    }


def run(opts: Options, broker: Broker) -> list[Row]:
    total = 2_000 if opts.quick else 10_000
    rounds = 1 if opts.quick else 3
    runs: dict[str, list[dict[str, Any]]] = {}
    entrants = contenders(PREFETCH)
    for n in range(rounds):
        # Rotating the order spreads whatever else the machine does over all four.
        for contender in entrants[n % len(entrants) :] + entrants[: n % len(entrants)]:
            log(
                f"P2 round {n + 1}/{rounds}: {contender.name} drains {total} messages, "
                f"{PROCESSES} processes, prefetch {PREFETCH}"
            )
            result = drain(opts, broker, contender, total, PREFETCH)
            runs.setdefault(contender.name, []).append(result)
            log(
                f"P2: {contender.name}: {result['rate']:.0f} msg/s, "
                f"{result['cpu_us_per_msg']:.0f} µs CPU per message"
            )
    return _rows(runs, total)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _rows(runs: dict[str, list[dict[str, Any]]], total: int) -> list[Row]:
    rates = {name: _median([r["rate"] for r in rs]) for name, rs in runs.items()}
    cpu = {name: _median([r["cpu_us_per_msg"] for r in rs]) for name, rs in runs.items()}

    def cell(name: str) -> str:
        spread = ", ".join(f"{r['rate']:.0f}" for r in runs[name])
        return f"{rates[name]:.0f} msg/s [{spread}]; {cpu[name]:.0f} µs CPU/msg"

    what = (
        f"no-op drain of {total:,} msgs, quorum queue, {PROCESSES} processes x prefetch "
        f"{PREFETCH}: median of {len(runs['ours'])} runs [each run]"
    )
    figures = {
        "rates": rates,
        "cpu_us_per_msg": cpu,
        "runs": runs,
        "messages": total,
        "processes": PROCESSES,
        "prefetch": PREFETCH,
    }
    vs_raw = rates["ours"] / rates["raw pika"]
    vs_dramatiq = rates["ours"] / rates["dramatiq"]
    common = {
        "what": what,
        "ours": cell("ours"),
        "reference": f"raw pika: {cell('raw pika')}",
        "dramatiq": cell("dramatiq"),
        "celery": cell("celery"),
    }
    return [
        Row(
            id="P2",
            ratio=vs_raw,
            goal=">= 0.9 x raw pika",
            met=vs_raw >= 0.9,
            figures={**figures, "goal_ratio": 0.9, "goal_kind": "min", "label": "P2 / raw pika"},
            **common,
        ),
        Row(
            id="P2",
            what="the same drains, against Dramatiq",
            ours=f"{rates['ours']:.0f} msg/s",
            reference="-",
            dramatiq=f"{rates['dramatiq']:.0f} msg/s",
            ratio=vs_dramatiq,
            goal=">= 2 x Dramatiq",
            met=vs_dramatiq >= 2.0,
            figures={"goal_ratio": 2.0, "goal_kind": "min", "label": "P2 / Dramatiq"},
        ),
    ]


# -- the worker processes of the first two contenders ------------------------------------------


def _raw_worker(url: str, queue: str, prefetch: int) -> None:
    wait_for_go()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    channel.start_consuming()


def _ours_worker(url: str, queue: str, prefetch: int) -> None:
    from shared.broker.consumer import Consumer, Route
    from shared.policies.retry_policy import RetryPolicy
    from shared.process.runtime import stop_on_signals

    def no_op(_message: messages.ImageUploadRequested, _attempt: int) -> None:
        return None

    stop = stop_on_signals()
    wait_for_go()
    # The runtime decodes each body into the route's type before the (no-op) handler runs.
    route = Route(
        topology.WorkQueue(queue, queue),
        messages.ImageUploadRequested,
        no_op,
        RetryPolicy((1,), max_attempts=1),
    )
    Consumer(url, route, concurrency=prefetch).run(stop)


def _worker(role: str) -> None:
    url, queue = os.environ["BENCH_AMQP_URL"], os.environ["BENCH_QUEUE"]
    prefetch = int(os.environ["BENCH_PREFETCH"])
    {"raw": _raw_worker, "ours": _ours_worker}[role](url, queue, prefetch)


if __name__ == "__main__":
    _worker(sys.argv[1])
