"""Facebook refuses to create a Page album for good (issue 10, item 2): the album still reaches
Facebook, as one multi-photo post, with every photo sent once. Written against the handler's
long-standing interface only (the store's `create_album`, the fake Graph's faults), so that it
runs, and fails, on the code from before the fallback."""

from __future__ import annotations

from datetime import timedelta

from services.uploader.fake_graph import FakeGraph, Fault
from services.uploader.handler import ImageUploader, Policy
from shared.adapters.fake_s3 import FakeS3
from shared.adapters.graph_client import GraphError
from shared.broker.fake_publisher import FakePublisher
from shared.delivery.outbox import Outbox
from shared.policies.fate import Delivery, decide
from tests.unit.stores import new_store

BUCKET = "unit"


def test_a_refused_album_create_sends_every_photo_once_unpublished() -> None:
    store = new_store()
    graph, s3 = FakeGraph(), FakeS3()
    graph.plan(
        "create_album",
        Fault(
            GraphError(
                "(#200) This endpoint is deprecated", http_status=403, code=200, is_transient=False
            )
        ),
    )
    uploader = ImageUploader(
        store,
        Outbox(
            store,
            FakePublisher(),  # type: ignore[arg-type]
            grace=timedelta(0),
        ),
        graph,  # type: ignore[arg-type]
        s3,
        BUCKET,
        Policy((5, 30), max_attempts=3),
    )
    user, _ = store.create_user("u@example.com")
    keys = [f"{user.prefix}p{n}.png" for n in range(6)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"png" * 10, ContentType="image/png")
    album_id, rows = store.create_album(user.id, "Trip", None, keys)

    fates = [decide(uploader.route(), Delivery(row.body, {})) for row in rows]

    album = store.album(album_id)
    assert album is not None
    assert [image.state for image in album.images] == ["uploaded"] * 6, [
        image.error for image in album.images
    ]
    assert [f.kind for f in fates] == ["ack"] * 6
    # One photo per image, each the one recorded for it.
    assert sorted(p["id"] for p in graph.photos) == sorted(i.photo_id or "" for i in album.images)
    assert all(p.get("published") is False for p in graph.photos)
