"""The store's gauges (shared/observability/store_metrics.py) read what the rows say, on SQLite and
PostgreSQL: albums publishing and the oldest's age, leases run out, the outbox, holds."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update

from shared.observability.store_metrics import StoreCollector
from shared.store import Store
from shared.store.tables import Album, OutboxMessage, utcnow
from tests.present import present


def test_the_figures_follow_the_rows(store: Store) -> None:
    before = store.figures()
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Old", None, [f"{user.prefix}{n}.png" for n in range(3)]
    )
    with store.engine.begin() as db:  # published six hours ago, its messages never relayed
        db.execute(
            update(Album)
            .where(Album.id == album_id)
            .values(created_at=utcnow() - timedelta(hours=6))
        )
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([r.id for r in rows]))
            .values(created_at=utcnow() - timedelta(minutes=20))
        )
    image = present(store.album(album_id)).images[0]
    store.start_attempt(image.id, lease=timedelta(seconds=-30))  # its lease already ran out
    store.hold_graph("page-figures", 120)

    after = store.figures()
    assert after.albums_publishing == before.albums_publishing + 1
    assert after.oldest_publishing_age_s >= 6 * 3600
    assert after.uploading_past_lease == before.uploading_past_lease + 1
    assert after.outbox_backlog == before.outbox_backlog + 3
    assert after.outbox_oldest_age_s >= 20 * 60
    assert 100 < after.holds["page-figures"] <= 120


def test_the_collector_serves_them_as_gauges(store: Store) -> None:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    store.create_album(user.id, "Now", None, [f"{user.prefix}a.png"])
    store.hold_graph("page-served", 60)
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    text = generate_latest(registry).decode()
    figures = store.figures()
    assert f"albums_publishing {float(figures.albums_publishing)}" in text
    assert f"albums_outbox_backlog {float(figures.outbox_backlog)}" in text
    assert 'albums_throttle_hold_seconds{scope="page-served"}' in text
    for name in (
        "albums_oldest_publishing_age_seconds",
        "albums_images_uploading_past_lease",
        "albums_outbox_oldest_age_seconds",
    ):
        assert f"\n{name} " in text


def test_a_store_away_leaves_the_scrape_answering() -> None:
    class Away:
        def figures(self) -> None:
            raise ConnectionError("the store is away")

    registry = CollectorRegistry()
    registry.register(StoreCollector(Away()))  # type: ignore[arg-type]
    assert "albums_publishing" not in generate_latest(registry).decode()
