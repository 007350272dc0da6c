"""Facebook's photo limits checked before the first byte: an album with a 12 MB JPEG and a
WebP among good PNGs, through the real handler, moto's S3 and the Graph simulator. The two
fail at once (attempt 1, no upload request to Facebook) with a reason that names the limit and
what to do, dead-lettered like other refusals; the PNGs publish."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from dev.images import png
from services.uploader.handler import ImageUploader, Policy
from shared.adapters.graph_client import GraphClient, GraphError
from shared.broker.publisher import Publisher
from shared.contracts import dead_letters, topology
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, decide
from shared.store import Store
from tests.present import present

from .helpers import PAGE_ID, TOKEN, VERSION, get_all, sim_photos, uploader_publisher

pytestmark = pytest.mark.integration

BUCKET = "limits-test"
POLICY = Policy(retry_delays=(1, 3), max_attempts=3)
TOO_BIG = "12.0 MB is over Facebook's 10 MB limit for a photo: resize it and retry"
WEBP = (
    "WebP is not a format Facebook takes for photos (JPEG, PNG, GIF, BMP or TIFF): "
    "convert it and retry"
)


@pytest.fixture()
def publisher(amqp_url: str) -> Iterator[Publisher]:
    with uploader_publisher(
        amqp_url, POLICY.retry_delays, (topology.ALBUM_SETTLED.name,)
    ) as publisher:
        yield publisher


def _uploads(sim: str) -> dict[str, int]:
    return dict(requests.get(f"{sim}/_sim/uploads", timeout=5).json())


def test_a_12_mb_jpeg_and_a_webp_fail_at_once_and_the_rest_publishes(
    sqlite_store: Store, sim: str, s3_client: Any, publisher: Publisher, amqp_url: str
) -> None:
    if BUCKET not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=BUCKET)
    dead_queue = topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
    get_all(amqp_url, dead_queue)
    user, _ = sqlite_store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    objects = {
        f"{user.prefix}a.png": (png(48, 32, seed=1), "image/png"),
        f"{user.prefix}big.jpg": (b"\xff\xd8\xff\xe0" + bytes(12 * 1024 * 1024 - 4), "image/jpeg"),
        f"{user.prefix}b.png": (png(48, 32, seed=2), "image/png"),
        f"{user.prefix}pic.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64), "image/webp"),
        f"{user.prefix}c.png": (png(48, 32, seed=3), "image/png"),
    }
    for key, (body, content_type) in objects.items():
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)
    album_id, rows = sqlite_store.create_album(user.id, "Limits", None, list(objects))
    graph = GraphClient(sim, VERSION, PAGE_ID, TOKEN, timeout=(5.0, 30.0))
    uploader = ImageUploader(
        sqlite_store,
        Outbox(sqlite_store, publisher, grace=timedelta(0)),
        graph,
        s3_client,
        BUCKET,
        POLICY,
    )

    for row in rows:  # attempt 1 each: a refusal is final, not a retry copy
        fate = decide(
            uploader.route(), Delivery(row.body, {}, False, row.message_id, "image.upload")
        )
        assert fate.outgoing == ()

    album = present(sqlite_store.album(album_id))
    by_key = {image.key: image for image in album.images}
    assert (by_key[f"{user.prefix}big.jpg"].state, by_key[f"{user.prefix}big.jpg"].error) == (
        "failed",
        TOO_BIG,
    )
    assert (by_key[f"{user.prefix}pic.webp"].state, by_key[f"{user.prefix}pic.webp"].error) == (
        "failed",
        WEBP,
    )
    assert all(by_key[f"{user.prefix}{n}.png"].state == "uploaded" for n in "abc")
    assert album.state == "done_with_failures"
    # Nothing of the two reached Facebook: three upload requests, the PNGs' bytes only.
    uploads = _uploads(sim)
    assert uploads["requests"] == 3, uploads
    assert uploads["declared_bytes"] < 64 * 1024, uploads
    assert len(sim_photos(sim)) == 3
    letters = get_all(amqp_url, dead_queue)
    assert sorted(str(props.headers[dead_letters.REASON_HEADER]) for props, _ in letters) == sorted(
        [TOO_BIG, WEBP]
    )
    assert all(props.headers[dead_letters.ATTEMPTS_HEADER] == 1 for props, _ in letters)


def test_the_simulator_refuses_a_webp_sent_past_our_check(sim: str) -> None:
    """Sent under a JPEG's name and type, a WebP is still refused by its bytes, as Facebook
    does: a test that skips our check sees the refusal, and the request is counted."""
    graph = GraphClient(sim, VERSION, PAGE_ID, TOKEN, timeout=(5.0, 30.0))
    album = graph.create_album("Limits")
    body = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64)
    with pytest.raises(GraphError) as refused:
        graph.upload_photo(album, io.BytesIO(body), len(body), "renamed.jpg", "image/jpeg", "")
    assert (refused.value.http_status, refused.value.code) == (400, 324)
    assert "unsupported image format" in refused.value.message
    assert sim_photos(sim) == []
    assert _uploads(sim)["requests"] == 1 and _uploads(sim)["declared_bytes"] > len(body)
