"""The images-per-day quota on a real store: albums posted at once through separate Store
instances (as separate API processes are) are counted one after the other, so together they
never exceed the quota; what was refused left nothing behind."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.store import QuotaExceeded, Store

pytestmark = pytest.mark.integration

ALBUMS, IMAGES, QUOTA = 8, 3, 10


def test_albums_posted_at_once_never_exceed_the_quota(store: Store) -> None:
    user, _token = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    url = store.engine.url.render_as_string(hide_password=False)
    processes = [Store(url) for _ in range(ALBUMS)]  # each its own engine, like a process
    start = threading.Barrier(ALBUMS)
    accepted: list[str] = []
    refused: list[QuotaExceeded] = []

    def post(n: int) -> None:
        keys = [f"{user.prefix}{n}/{i}.png" for i in range(IMAGES)]
        start.wait()
        try:
            album_id, _rows = processes[n].create_album(
                user.id, f"a{n}", None, keys, images_per_day=QUOTA
            )
            accepted.append(album_id)
        except QuotaExceeded as exc:
            refused.append(exc)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(ALBUMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for other in processes:
        other.dispose()
    assert len(accepted) == QUOTA // IMAGES, (accepted, refused)
    assert len(refused) == ALBUMS - len(accepted)
    assert all(exc.quota == QUOTA and exc.requested == IMAGES for exc in refused)
    albums = store.albums(user.id)
    assert sorted(a.id for a in albums) == sorted(accepted)
    assert sum(len(a.images) for a in albums) == IMAGES * len(accepted)
