"""P7: the uploader's cost per image with a backlog of 10,000 against one of 1,000.

The path is the uploader's duplicate path, chosen because it is the real service doing real work
per message (decode, a store transaction, the ack) and nothing else: every image is already
uploaded in the store, so each message is what a redelivery or a replay looks like, and is
acked without calling S3 or Facebook. Uploads themselves are paced by Facebook (P3), which
would hide the broker's and the runtime's cost per message that a backlog could change.

The store holds all 10,000 images in both runs, so only the queue's depth differs. Each run
starts a fresh uploader on a full queue; the first WARMUP messages (connections, caches) are
outside the window, which runs from the first of the measured messages taken to the queue
empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from bench.common import Broker, Options, QueueWatch, Row, blocking, log, wait_for
from bench.p2_consume import cpu_seconds
from bench.system import System, database
from shared.broker.connection import properties
from shared.contracts import messages, topology
from shared.contracts.outgoing import Outgoing
from shared.store import OutboxMessage, Store

DELAYS = (1, 2, 5)
ALBUM = 200  # the API's most images per album
WARMUP = 200
QUEUE = topology.IMAGE_UPLOADS.name


def seed_uploaded(database_url: str, total: int) -> list[tuple[str, int, str]]:
    """`total` images in albums of 200, all already uploaded: [(album, image id, key)]."""
    store = Store(database_url)
    store.create_schema()
    user, _token = store.create_user("bench-p7@example.com")
    images: list[tuple[str, int, str]] = []
    for first in range(0, total, ALBUM):
        keys = [f"{user.prefix}p7/{n:05d}.png" for n in range(first, min(first + ALBUM, total))]
        album_id, rows = store.create_album(user.id, f"p7 {first}", None, keys)
        store.mark_published([row.id for row in rows])  # nothing for the outbox relay to send
        images += [(album_id, image_id, key) for image_id, key in _ids(rows, keys)]
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE images SET state = 'uploaded', attempts = 1, photo_id = 'p7-' || id")
        )
        connection.execute(
            text("UPDATE albums SET state = 'done', settle_seq = 1, settled_at = :now"),
            {"now": datetime.now(UTC)},
        )
    store.engine.dispose()
    return images


def _ids(rows: Sequence[OutboxMessage], keys: list[str]) -> Iterator[tuple[int, str]]:
    for row, key in zip(rows, keys, strict=True):
        message = messages.decode(row.body)
        assert isinstance(message, messages.ImageUploadRequested)
        yield message.image_id, key


def fill(url: str, images: list[tuple[str, int, str]]) -> None:
    connection = blocking(url)
    try:
        channel = connection.channel()
        for album_id, image_id, key in images:
            body = messages.encode(
                messages.ImageUploadRequested(album_id=album_id, image_id=image_id, key=key)
            )
            out = Outgoing(
                topology.WORK_EXCHANGE,
                topology.IMAGE_UPLOADS.routing_key,
                body,
                message_id=uuid.uuid4().hex,
            )
            channel.basic_publish(out.exchange, out.routing_key, out.body, properties(out))
        watch = QueueWatch(url, QUEUE)
        try:
            wait_for(
                lambda: watch.ready() >= len(images), 120, what=f"{len(images)} messages in {QUEUE}"
            )
        finally:
            watch.close()
    finally:
        connection.close()


def drain(system: System, url: str, images: list[tuple[str, int, str]]) -> dict[str, Any]:
    fill(url, images)
    measured = len(images) - WARMUP
    watch = QueueWatch(url, QUEUE)
    try:
        proc = system.start_uploader(4)
        cpu_before = cpu_seconds([proc.pid])
        first, empty = watch.drain_window(measured, timeout=600)
        cpu = cpu_seconds([proc.pid]) - cpu_before
    finally:
        watch.close()
        system.stop("uploader")
    seconds = empty - first
    return {
        "messages": measured,
        "seconds": seconds,
        "ms_per_image": seconds / measured * 1000,
        "cpu_ms_per_image": cpu / len(images) * 1000,
        "rates_by_depth": watch.rates_by_depth(measured),
    }


def run(opts: Options, broker: Broker) -> list[Row]:
    small, large = (200, 2_000) if opts.quick else (1_000, 10_000)
    results: dict[int, dict[str, Any]] = {}
    with broker.vhost("p7") as url, database(opts, "p7") as db_url:
        connection = blocking(url)
        topology.declare(connection.channel(), DELAYS)
        connection.close()
        images = seed_uploaded(db_url, large)
        system = System("p7", url, db_url)
        try:
            for backlog in (small, large):
                log(f"P7: a backlog of {backlog} (+{WARMUP} warm-up) duplicates")
                results[backlog] = drain(system, url, images[: backlog + WARMUP])
                log(
                    f"P7: {backlog}: {results[backlog]['ms_per_image']:.2f} ms per image; "
                    f"msg/s by depth, deepest first: {results[backlog]['rates_by_depth']}"
                )
        finally:
            system.stop_all()
    return [_row(results, small, large)]


def _row(results: dict[int, dict[str, Any]], small: int, large: int) -> Row:
    big, little = results[large]["ms_per_image"], results[small]["ms_per_image"]
    ratio = big / little
    return Row(
        id="P7",
        what=f"uploader, cost per image: backlog {large:,} vs {small:,} (already-uploaded path)",
        ours=f"{big:.2f} ms/image",
        reference=f"backlog {small:,}: {little:.2f} ms/image",
        ratio=ratio,
        goal="<= 1.2",
        met=ratio <= 1.2,
        figures={
            "runs": {str(k): v for k, v in results.items()},
            "goal_ratio": 1.2,
            "label": "P7 backlog",
        },
    )
