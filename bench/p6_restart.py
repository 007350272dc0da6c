"""P6: from the broker's restart to consumption resumed, and no confirmed probe lost.

On a RabbitMQ node of the bench's own (dev/rabbit_node.py), a `shared.broker.consumer.Consumer` (the
services' runtime, declaring the topology on connect as the uploader does) consumes
`uploader.image-uploads` in a child process that prints when it handles each message. The node
is restarted (a clean stop, then a SIGKILL, alternately); the clock starts at the first moment
the node accepts an AMQP connection again, the bench publishes a probe at once (retrying until
the broker confirms it) and another every 0.25 s, and stops when the consumer handles one.

The probes go through the services' own `shared.broker.publisher.Publisher` (a fresh one per
restart, so its reconnect backoff is not timed), so the row also checks the publisher: every
probe it reported confirmed must be handled. A probe is lost only if, after the last restart
and LATE_S more, it was never handled and the queue does not hold it either; one handled later
than a second after a later probe counts as late, not lost.

An earlier version once counted 2 probes "lost by the broker" after a SIGKILL and blamed
RabbitMQ 3.10.8. `bench/confirm_loss.py` found no confirmed message lost over 140 SIGKILLs, with
raw pika and with our Publisher. The 2 were the bench's own: the probes that waited for the
consumer reach its four workers together, and their "consumed" lines, each written by print()
in two calls, interleaved into lines the bench could not parse (`report_handled`;
docs/confirmed-then-lost.md).

`python -m bench.p6_restart consumer` is that child.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TextIO

import pika

from bench.common import PY, VAR, Broker, Options, Proc, Row, base_env, log
from dev.rabbit_node import Node
from shared.broker.errors import BrokerError
from shared.broker.publisher import Publisher
from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing

DELAYS = (1, 2, 5)
#: A probe is published this often until one is handled.
PROBE_EVERY_S = 0.25
#: Quorum queues declared just before a crash can come back empty and leaderless (see the
#: note on the second node); the topology gets this long to reach disk before the first kill.
SETTLE_S = 3.0
#: After the last restart, a confirmed probe not handled yet gets this long before the queue
#: is searched for it.
LATE_S = 30.0


class Consumed:
    """The child's "consumed <monotonic> <id>" lines, read on a thread: when each id was first
    handled."""

    def __init__(self, proc: Proc) -> None:
        self._handled: dict[str, float] = {}
        self._changed = threading.Condition()
        stream = proc.process.stdout
        if stream is None:
            raise ValueError("the consumer's stdout must be a pipe")
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            parts = raw.decode().split()
            if len(parts) == 3 and parts[0] == "consumed":
                with self._changed:
                    self._handled.setdefault(parts[2], float(parts[1]))
                    self._changed.notify_all()

    def wait_for(self, probe_id: str, timeout: float) -> float:
        found = self.first_of({probe_id}, timeout)
        if found is None:
            raise TimeoutError(f"probe {probe_id} not consumed within {timeout} s")
        return found[0]

    def first_of(self, probe_ids: set[str], timeout: float) -> tuple[float, str] | None:
        """When the first of these probes was handled, and which; None if none in time."""
        with self._changed:
            self._changed.wait_for(lambda: not probe_ids.isdisjoint(self._handled), timeout)
            found = [(self._handled[p], p) for p in probe_ids if p in self._handled]
        return min(found) if found else None

    def all_of(self, probe_ids: set[str], timeout: float) -> set[str]:
        """Which of these probes are handled within `timeout` (returns as soon as all are)."""
        with self._changed:
            self._changed.wait_for(lambda: probe_ids <= self._handled.keys(), timeout)
            return probe_ids & self._handled.keys()

    def when(self, probe_id: str) -> float | None:
        with self._changed:
            return self._handled.get(probe_id)


@dataclass
class Probes:
    """Every probe the publisher reported confirmed, and what became of them."""

    confirmed: list[str] = field(default_factory=list)
    late: int = 0

    def settle(self, consumed: Consumed, held: set[str]) -> list[str]:
        """The confirmed probes never handled and not in the queue either: lost."""
        return [p for p in self.confirmed if consumed.when(p) is None and p not in held]


def _probe(publisher: Publisher, timeout: float = 60) -> str:
    """Publish one upload request through the services' publisher, sending it again while the
    queue is not back yet (a quorum queue elects its leader after the node boots)."""
    # The probe's id is its album id too: the handler sees the message, not its properties.
    probe_id = uuid.uuid4().hex
    body = messages.encode(
        messages.ImageUploadRequested(album_id=probe_id, image_id=1, key="users/1/p6/probe.png")
    )
    out = Outgoing(
        topology.WORK_EXCHANGE, topology.IMAGE_UPLOADS.routing_key, body, message_id=probe_id
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            publisher.publish_confirmed([out], timeout=5.0, connect_wait=5.0)
            return out.message_id
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _accepted(node: Node, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = node.accepts()
        if connection is not None:
            connection.close()
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"node {node.name} took no connection within {timeout} s")


def restart_once(node: Node, consumed: Consumed, probes: Probes, kill: bool) -> float:
    """Restart the node; seconds from its first accepted connection to a probe handled."""
    if kill:
        node.kill()
    else:
        node.stop()
    down = node.accepts()
    if down is not None:  # a restart that never went down would measure nothing
        down.close()
        raise RuntimeError(f"node {node.name} still takes connections after the {kill=} stop")
    node.start(wait=False)
    accepted_at = _accepted(node)
    publisher = Publisher(node.url())
    try:
        return _first_handled(publisher, consumed, probes, accepted_at)
    finally:
        publisher.close()


def _first_handled(
    publisher: Publisher,
    consumed: Consumed,
    probes: Probes,
    accepted_at: float,
    timeout: float = 60,
) -> float:
    sent: list[str] = []
    while time.monotonic() < accepted_at + timeout:
        sent.append(_probe(publisher))
        probes.confirmed.append(sent[-1])
        found = consumed.first_of(set(sent), timeout=PROBE_EVERY_S)
        if found is not None:
            when, probe_id = found
            # Four workers may handle two probes in either order: an earlier probe handled
            # within a second more is in time; later than that it is late (lost only if it
            # never comes: see `Probes.settle`).
            earlier = set(sent[: sent.index(probe_id)])
            probes.late += len(earlier - consumed.all_of(earlier, timeout=1.0))
            return when - accepted_at
    raise TimeoutError(f"none of {len(sent)} probes consumed within {timeout} s")


def _held(node: Node) -> set[str]:
    """The message ids the work queue still holds (the consumer has stopped)."""
    connection = pika.BlockingConnection(pika.URLParameters(node.url()))
    try:
        channel = connection.channel()
        held: set[str] = set()
        while True:
            method, props, _body = channel.basic_get(topology.IMAGE_UPLOADS.name, auto_ack=True)
            if method is None:
                return held
            held.add(props.message_id)
    finally:
        connection.close()


def run(opts: Options, broker: Broker) -> list[Row]:
    kinds = [False] if opts.quick else [False, True, False]
    node = Node(VAR / f"node-{uuid.uuid4().hex[:6]}", plugins=())
    results: list[tuple[str, float]] = []
    probes = Probes()
    try:
        log(f"P6: starting node {node.name} on port {node.amqp_port}")
        node.start()
        connection = node.accepts()
        if connection is None:
            raise RuntimeError("the bench's node booted but takes no connection")
        topology.declare(connection.channel(), DELAYS)
        connection.close()
        time.sleep(SETTLE_S)
        proc = Proc(
            "p6-consumer",
            [PY, "-m", "bench.p6_restart", "consumer"],
            base_env(BENCH_AMQP_URL=node.url()),
            stdout_pipe=True,
        )
        try:
            consumed = Consumed(proc)
            publisher = Publisher(node.url())
            try:  # it consumes before any restart
                consumed.wait_for(_probe(publisher), timeout=60)
            finally:
                publisher.close()
            for kill in kinds:
                how = "SIGKILL" if kill else "clean stop"
                seconds = restart_once(node, consumed, probes, kill)
                results.append((how, seconds))
                log(
                    f"P6: after a {how}: consuming again {seconds:.2f} s after the node "
                    "accepted connections"
                )
            consumed.all_of(set(probes.confirmed), timeout=LATE_S)
        finally:
            proc.stop()
        lost = probes.settle(consumed, _held(node))
        if lost:
            log(f"P6: confirmed and lost: {lost}")
    finally:
        node.destroy()
    return [_row(results, probes, len(lost))]


def _row(results: list[tuple[str, float]], probes: Probes, lost: int) -> Row:
    worst = max(seconds for _, seconds in results)
    each = ", ".join(f"{how} {s:.2f}" for how, s in results)
    return Row(
        id="P6",
        what=f"broker restart to consumption resumed ({len(results)} restarts)",
        ours=f"{worst:.2f} s worst ({each}); confirmed probes lost: {lost} of "
        f"{len(probes.confirmed)} (late: {probes.late})",
        reference="goal 5 s",
        ratio=worst / 5.0,
        goal="<= 5 s; no confirmed probe lost",
        met=worst <= 5.0 and lost == 0,
        figures={
            "restarts": [{"how": how, "seconds": s} for how, s in results],
            "probes_confirmed": len(probes.confirmed),
            "probes_lost": lost,
            "probes_late": probes.late,
            "goal_ratio": 1.0,
            "label": "P6 restart",
        },
    )


# -- the consumer child ----------------------------------------------------------------------


_LINE_LOCK = threading.Lock()


def report_handled(stream: TextIO, probe_id: str) -> None:
    """One whole line per handled probe. Four workers report at once (the probes that waited
    for the consumer come together), and print() writes the text and its newline in two calls:
    their lines interleaved, and each garbled line was a handled probe counted lost."""
    # The clock is CLOCK_MONOTONIC, the same across processes on Linux.
    line = f"consumed {time.monotonic():.6f} {probe_id}\n"
    with _LINE_LOCK:
        stream.write(line)
        stream.flush()


def _consumer() -> None:
    from shared.broker.consumer import Consumer, Route
    from shared.policies.retry_policy import RetryPolicy
    from shared.process.runtime import stop_on_signals

    def handle(message: messages.ImageUploadRequested, _attempt: int) -> None:
        report_handled(sys.stdout, message.album_id)

    declare = functools.partial(topology.declare, retry_delays=DELAYS)
    route = Route(
        topology.IMAGE_UPLOADS,
        messages.ImageUploadRequested,
        handle,
        RetryPolicy(DELAYS, max_attempts=6),
    )
    consumer = Consumer(
        os.environ["BENCH_AMQP_URL"], route, concurrency=4, on_connect=declare, grace_s=2
    )
    consumer.run(stop_on_signals())


if __name__ == "__main__" and sys.argv[1:] == ["consumer"]:
    _consumer()
