"""Does a confirmed message survive a broker SIGKILL? Probes a quorum queue across crashes.

On a RabbitMQ node of its own (dev/rabbit_node.py, never the machine's broker), one thread publishes
a probe with confirms every 0.1-0.25 s to the uploader's work queue (a quorum queue) while the
main thread SIGKILLs and restarts the node several times; the first publishes after each
restart fall in the queue's leader election. After the last restart every message in the queue
is read, and each probe the broker confirmed but the queue does not hold is counted lost. A
probe whose publish failed is "unknown" (it may or may not be stored), never lost.

    python -m bench.confirm_loss --client raw --kills 10    # pika's BlockingChannel
    python -m bench.confirm_loss --client ours --kills 10   # shared.broker.publisher.Publisher

`raw` opens a fresh BlockingConnection and channel (with confirm_delivery) after each failure;
`ours` keeps one Publisher, which reconnects by itself. `--consumer` adds what P6 has: the
services' consumer runtime (`shared.broker.consumer.Consumer`, concurrency 4, declaring the
topology on each connect) consuming the queue throughout; a probe it handled is not lost, and the
run reports how late the latest one came after its confirm.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pika
import pika.exceptions

from bench.common import VAR
from dev.rabbit_node import Node
from shared.broker import publisher as publisher_module
from shared.broker.errors import BrokerError
from shared.broker.publisher import Publisher
from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing

#: The uploader's work queue (a quorum queue), as P6 uses it; a probe is an upload request whose
#: album id is the probe's id (the consumer's handler sees the message, not its properties).
QUEUE = topology.IMAGE_UPLOADS.name
DELAYS = (1, 2, 5)
#: A quorum queue declared just before a crash can come back empty (its registration had not
#: reached disk): let it settle before the first kill, as a production queue would have.
SETTLE_S = 3.0
#: The queue is read until it has been empty this long after the last restart.
DRAIN_QUIET_S = 5.0


@dataclass
class Tally:
    confirmed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    confirmed_at: dict[str, float] = field(default_factory=dict)
    consumed_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, probe_id: str, ok: bool) -> None:
        with self.lock:
            (self.confirmed if ok else self.unknown).append(probe_id)
            if ok:
                self.confirmed_at[probe_id] = time.monotonic()

    def consumed(self, probe_id: str) -> None:
        with self.lock:
            self.consumed_at.setdefault(probe_id, time.monotonic())


def _params(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 1
    params.blocked_connection_timeout = 5
    return params


class RawClient:
    """pika's BlockingChannel with confirm_delivery; a fresh connection after any failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None

    def publish(self, probe_id: str) -> bool:
        try:
            if self._channel is None:
                self._channel = pika.BlockingConnection(_params(self._url)).channel()
                self._channel.confirm_delivery()
            self._channel.basic_publish(
                topology.WORK_EXCHANGE,
                topology.IMAGE_UPLOADS.routing_key,
                _body(probe_id),
                mandatory=True,
                properties=pika.BasicProperties(delivery_mode=2, message_id=probe_id),
            )
            return True
        except (pika.exceptions.AMQPError, OSError):
            self._drop()
            return False

    def _drop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.connection.close()
            except Exception:  # noqa: BLE001 - it is dead already; only its socket matters
                pass

    def close(self) -> None:
        self._drop()


class OurClient:
    def __init__(self, url: str) -> None:
        # Reconnect at once, as `raw` does: with the services' backoff (up to 5 s) it would
        # often miss the first seconds after a restart, the leader election this looks at.
        publisher_module._RECONNECT_DELAYS_S = (0.1,)
        self._publisher = Publisher(url)

    def publish(self, probe_id: str) -> bool:
        try:
            self._publisher.publish_confirmed(
                [
                    Outgoing(
                        topology.WORK_EXCHANGE,
                        topology.IMAGE_UPLOADS.routing_key,
                        _body(probe_id),
                        message_id=probe_id,
                    )
                ],
                timeout=5.0,
                connect_wait=0.5,
            )
            return True
        except BrokerError:
            return False

    def close(self) -> None:
        self._publisher.close()


def _publish_until(
    client: RawClient | OurClient, tally: Tally, stop: threading.Event, rng: random.Random
) -> None:
    while not stop.is_set():
        probe_id = uuid.uuid4().hex
        tally.record(probe_id, client.publish(probe_id))
        stop.wait(rng.uniform(0.1, 0.25))


def _body(probe_id: str) -> bytes:
    return messages.encode(
        messages.ImageUploadRequested(album_id=probe_id, image_id=1, key="users/1/probe.png")
    )


def _consume(url: str, tally: Tally, stop: threading.Event) -> None:
    from shared.broker.consumer import Consumer, Route
    from shared.policies.retry_policy import RetryPolicy

    def handle(message: messages.ImageUploadRequested, _attempt: int) -> None:
        tally.consumed(message.album_id)

    route = Route(
        topology.IMAGE_UPLOADS,
        messages.ImageUploadRequested,
        handle,
        RetryPolicy(DELAYS, max_attempts=6),
    )
    declare = functools.partial(topology.declare, retry_delays=DELAYS)
    Consumer(url, route, concurrency=4, on_connect=declare, grace_s=2).run(stop)


def _drain(url: str, timeout: float = 120) -> set[str]:
    """Every message the queue holds, read until it has stayed empty for DRAIN_QUIET_S."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            connection = pika.BlockingConnection(_params(url))
            channel = connection.channel()
            while time.monotonic() - quiet_since < DRAIN_QUIET_S:
                method, props, _body = channel.basic_get(QUEUE, auto_ack=True)
                if method is None:
                    time.sleep(0.1)
                    continue
                seen.add(props.message_id)
                quiet_since = time.monotonic()
            connection.close()
            return seen
        except pika.exceptions.AMQPError:
            time.sleep(0.5)  # the queue may still be electing its leader
    raise TimeoutError(f"the queue could not be read within {timeout} s")


def run(client_kind: str, kills: int, seed: int, consumer: bool) -> dict[str, object]:
    rng = random.Random(seed)
    node = Node(VAR / f"node-{uuid.uuid4().hex[:6]}", plugins=())
    tally = Tally()
    stop = threading.Event()
    consuming = threading.Event()
    try:
        node.start()
        connection = pika.BlockingConnection(_params(node.url()))
        topology.declare(connection.channel(), DELAYS)
        connection.close()
        time.sleep(SETTLE_S)
        reader = threading.Thread(target=_consume, args=(node.url(), tally, consuming))
        if consumer:
            reader.start()
        client = RawClient(node.url()) if client_kind == "raw" else OurClient(node.url())
        publisher = threading.Thread(target=_publish_until, args=(client, tally, stop, rng))
        publisher.start()
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(1.0, 3.0))
                node.kill()
                node.start()
            time.sleep(rng.uniform(1.0, 3.0))
        finally:
            stop.set()
            publisher.join(timeout=30)
            client.close()
            if consumer:
                time.sleep(DRAIN_QUIET_S)  # what is on its way to the consumer arrives
                consuming.set()
                reader.join(timeout=30)
        held = _drain(node.url()) | set(tally.consumed_at)
        in_election = _log_lines(node, "leader not known")
    finally:
        node.destroy()
    lost = [p for p in tally.confirmed if p not in held]
    recovered = [p for p in tally.unknown if p in held]
    late = [
        tally.consumed_at[p] - tally.confirmed_at[p]
        for p in tally.confirmed
        if p in tally.consumed_at
    ]
    return {
        "client": client_kind,
        "consumer": consumer,
        "seed": seed,
        "kills": kills,
        "confirmed": len(tally.confirmed),
        "unknown": len(tally.unknown),
        "recovered": len(recovered),
        "lost": len(lost),
        "lost_ids": lost,
        "consumed": len(tally.consumed_at),
        "latest_after_confirm_s": round(max(late, default=0.0), 2),
        "later_than_1s": sum(1 for d in late if d > 1.0),
        "overtaken_by_1s": _overtaken(tally),
        "leader_not_known_in_log": in_election,
    }


def _log_lines(node: Node, text: str) -> int:
    """How many lines of the node's logs contain `text` (RabbitMQ logs "leader not known.
    Command will be forwarded once leader is known" for a publish made during the election)."""
    return sum(
        line.count(text)
        for path in (node.folder / "log").glob("*.log")
        for line in path.read_text(errors="replace").splitlines()
    )


def _overtaken(tally: Tally) -> int:
    """Confirmed probes handled more than 1 s after a probe confirmed after them: what the
    old P6 counted as lost."""
    count = 0
    earliest_later = float("inf")
    for probe_id in reversed(tally.confirmed):
        at = tally.consumed_at.get(probe_id)
        if at is None:
            continue
        if at > earliest_later + 1.0:
            count += 1
        earliest_later = min(earliest_later, at)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("raw", "ours"), required=True)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--consumer",
        action="store_true",
        help="consume the queue throughout with the services' runtime (as P6)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.client, args.kills, args.seed, args.consumer)), flush=True)


if __name__ == "__main__":
    main()
