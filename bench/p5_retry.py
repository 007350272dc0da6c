"""P5: how long each retry tier really holds a message, and whether a short wait ever queues
behind a longer one.

The bench declares the services' topology with short tiers (RETRY_DELAYS=1,2,5: the shape of
the production 5,30,120,... at a bench's length), publishes copies into each tier queue exactly as
the uploader's retry does (albums.retry, routing key `<queue>.retry.<N>s`), longest tier first
in each round, and times when each one comes back to `uploader.image-uploads`.
"""

from __future__ import annotations

import threading
import time
import uuid

import pika

from bench.common import Broker, Options, Row, blocking, log
from shared.broker.connection import properties
from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing

DELAYS = (1, 2, 5)
QUEUE = topology.IMAGE_UPLOADS


def tiers() -> dict[int, str]:
    """{seconds: queue} for every retry queue the topology declares for the uploads queue
    (each configured delay, and its jittered twin where the topology adds one)."""
    found = {}
    for spec in topology.queue_specs(DELAYS):
        if spec.exchange == topology.RETRY_EXCHANGE and spec.name.startswith(QUEUE.name):
            found[int(spec.arguments["x-message-ttl"]) // 1000] = spec.routing_key
    return dict(sorted(found.items()))


class Arrivals:
    """A consumer on the work queue, recording when each message id comes back."""

    def __init__(self, url: str) -> None:
        self.seen: dict[str, float] = {}
        self._connection = blocking(url)
        self._channel = self._connection.channel()
        self._channel.basic_consume(QUEUE.name, self._on_message, auto_ack=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p5-arrivals", daemon=True)
        self._thread.start()

    def _on_message(
        self, _ch: object, _method: object, props: pika.BasicProperties, _body: bytes
    ) -> None:
        self.seen[str(props.message_id)] = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._connection.close()


def publish_rounds(url: str, rounds: int, gap_s: float) -> dict[str, tuple[int, float]]:
    """{message id: (tier, when its publish started)}: each round longest tier first."""
    sent: dict[str, tuple[int, float]] = {}
    connection = blocking(url)
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(rounds):
        for delay, routing_key in sorted(tiers().items(), reverse=True):
            body = messages.encode(
                messages.ImageUploadRequested(
                    album_id=uuid.uuid4().hex, image_id=n + 1, key=f"users/1/p5/{n}.png"
                )
            )
            out = Outgoing(topology.RETRY_EXCHANGE, routing_key, body, headers={"album-attempt": 2})
            started = time.monotonic()
            channel.basic_publish(
                out.exchange, out.routing_key, out.body, properties(out), mandatory=True
            )
            sent[out.message_id] = (delay, started)
        time.sleep(gap_s)
    connection.close()
    return sent


def overtaken(sent: dict[str, tuple[int, float]], seen: dict[str, float]) -> int:
    """Pairs where a message due earlier (by more than 0.1 s) came back after one due later:
    a short wait stuck behind a long one."""
    due = {mid: start + delay for mid, (delay, start) in sent.items()}
    late = 0
    for a in due:
        for b in due:
            if due[a] + 0.1 < due[b] and seen[a] > seen[b]:
                late += 1
    return late


def run(opts: Options, broker: Broker) -> list[Row]:
    rounds = 3 if opts.quick else 8
    with broker.vhost("p5") as url:
        connection = blocking(url)
        topology.declare(connection.channel(), DELAYS)
        connection.close()
        arrivals = Arrivals(url)
        try:
            log(f"P5: {rounds} rounds into tiers {list(tiers())} s")
            sent = publish_rounds(url, rounds, gap_s=0.3)
            deadline = time.monotonic() + max(tiers()) * 2 + 5
            while len(arrivals.seen) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            arrivals.close()
    missing = set(sent) - set(arrivals.seen)
    if missing:
        raise RuntimeError(f"{len(missing)} retried messages never came back")
    stuck = overtaken(sent, arrivals.seen)
    return [_row(delay, sent, arrivals.seen, stuck) for delay in tiers()]


def _row(delay: int, sent: dict[str, tuple[int, float]], seen: dict[str, float], stuck: int) -> Row:
    actual = sorted(seen[mid] - start for mid, (d, start) in sent.items() if d == delay)
    upper = 1.1 * delay + 0.1
    within = actual[0] >= delay and actual[-1] <= upper
    return Row(
        id="P5",
        what=f"retry tier {delay} s (RETRY_DELAYS=1,2,5), {len(actual)} msgs",
        ours=f"{actual[0]:.3f}-{actual[-1]:.3f} s",
        reference=f"d = {delay} s",
        ratio=actual[-1] / delay,
        goal=f"d <= actual <= 1.1 d + 0.1 s ({upper:.2f} s); none behind a longer one",
        met=within and stuck == 0,
        figures={
            "actual_s": actual,
            "delay_s": delay,
            "upper_s": upper,
            "overtaken_pairs": stuck,
            "goal_ratio": upper / delay,
            "label": f"P5 tier {delay} s",
        },
        note="" if stuck == 0 else f"{stuck} pairs came back behind a message due later",
    )
