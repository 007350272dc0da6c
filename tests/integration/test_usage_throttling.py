"""Facebook's usage headers slow uploads down before Facebook throttles, shared by every uploader
process through the store: the Graph simulator reports the usage, two `ImageUploader`s share one
store (issue 10, item 5)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from services.uploader.handler import ImageUploader
from services.uploader.throttle_gate import ThrottleGate
from shared.adapters.graph_client import GraphClient
from shared.broker.publisher import Publisher
from shared.contracts import topology
from shared.delivery.outbox import Outbox
from shared.policies import retry_policy
from shared.policies.fate import Delivery, Fate, decide
from shared.store import Store
from tests.present import present

from .helpers import PAGE_ID, TOKEN, VERSION, set_faults, sim_photos
from .test_uploader_handler import BUCKET, POLICY, album_of, publisher  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture()
def uploaders(
    sqlite_store: Store,
    sim: str,
    s3_client: Any,
    publisher: Publisher,  # noqa: F811 - the shared fixture
) -> Iterator[Callable[[], ImageUploader]]:
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)

    def make() -> ImageUploader:
        gate = ThrottleGate(sqlite_store, PAGE_ID, threshold_pct=90, pause_s=60)
        graph = GraphClient(sim, VERSION, PAGE_ID, TOKEN, on_usage=gate.record)
        return ImageUploader(
            sqlite_store,
            Outbox(sqlite_store, publisher, grace=timedelta(0)),
            graph,
            s3_client,
            BUCKET,
            POLICY,
            gate=gate,
        )

    yield make
    set_faults(sim, {})


def run(uploader: ImageUploader, delivery: Delivery) -> Fate:
    return decide(uploader.route(), delivery)


def held_for(fate: Fate) -> float:
    (copy,) = fate.outgoing
    assert copy.exchange == topology.RETRY_EXCHANGE
    return float(copy.headers[retry_policy.NOT_BEFORE_HEADER])


def test_a_page_at_95_percent_makes_the_next_images_wait_instead_of_being_sent(
    uploaders: Callable[[], ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    album_id, deliveries, _ = album_of(sqlite_store, s3_client, 3)
    set_faults(sim, {"page_usage_pct": 95})
    uploader = uploaders()
    assert run(uploader, deliveries[0]).outgoing == ()  # sent; the answer says 95 %
    for delivery in deliveries[1:]:
        fate = run(uploader, delivery)
        assert fate.kind == "retry"
        assert held_for(fate) > 0
    assert len(sim_photos(sim)) == 1  # the next images were not sent
    images = present(sqlite_store.album(album_id)).images
    assert [image.state for image in images].count("retrying") == 2
    assert images[0].attempts + images[1].attempts + images[2].attempts <= 3  # none spent


def test_a_regain_time_is_honoured_across_two_uploader_instances(
    uploaders: Callable[[], ImageUploader], sqlite_store: Store, s3_client: Any, sim: str
) -> None:
    _, deliveries, _ = album_of(sqlite_store, s3_client, 2)
    first, second = uploaders(), uploaders()
    set_faults(sim, {"error_rates": {"80001": 1.0}, "throttle_minutes": 90})
    fate = run(first, deliveries[0])
    assert fate.kind == "retry"
    set_faults(sim, {})  # Facebook would answer again, but said 90 minutes
    before = len(sim_photos(sim))
    fate = run(second, deliveries[1])  # another process, the same store
    assert fate.kind == "retry"
    assert held_for(fate) >= time.time() + 90 * 60 - 30
    assert len(sim_photos(sim)) == before == 0
    assert sqlite_store.graph_held_for((PAGE_ID,)) > 89 * 60
