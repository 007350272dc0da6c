"""Reading an album back: one listing serves the album's retries for a while, no longer."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from services.uploader.album_photos import AlbumPhotos
from services.uploader.photo_match import Photo


def find(album: AlbumPhotos, fb_album: str, caption: str, fresh: bool = False) -> str | None:
    return next((p.id for p in album.photos(fb_album, fresh) if p.caption == caption), None)


class Lister:
    def __init__(self, photos: dict[str, list[dict[str, Any]]]) -> None:
        self.photos = photos
        self.calls: list[str] = []
        self.gate: threading.Event | None = None
        self.error: Exception | None = None

    def __call__(self, fb_album: str) -> list[dict[str, Any]]:
        self.calls.append(fb_album)
        if self.gate is not None:
            self.gate.wait(5)
        if self.error is not None:
            raise self.error
        return list(self.photos.get(fb_album, []))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def photos() -> tuple[AlbumPhotos, Lister, Clock]:
    lister = Lister(
        {
            "a1": [
                {"id": "p1", "name": "Caption 1"},
                {"id": "p10", "name": "Caption 10"},
                {"id": "p0"},
            ]
        }
    )
    clock = Clock()
    return AlbumPhotos(lister, ttl_s=2.5, clock=clock), lister, clock


def test_one_listing_answers_every_retry_within_its_time() -> None:
    album, lister, clock = photos()
    assert find(album, "a1", "Caption 1") == "p1"
    clock.now += 2.4
    assert find(album, "a1", "Caption 10") == "p10"
    assert find(album, "a1", "Caption 2") is None
    assert lister.calls == ["a1"]


def test_a_listing_keeps_what_graph_says_of_each_photo() -> None:
    lister = Lister(
        {
            "a1": [
                {
                    "id": "p1",
                    "name": "Beach",
                    "created_time": "2026-11-27T21:10:00+0000",
                    "images": [{"width": 720, "height": 480}, {"width": 2048, "height": 1365}],
                },
                {"id": "p2", "width": 600, "height": 400},
            ]
        }
    )
    held = {p.id: p for p in AlbumPhotos(lister, ttl_s=2.5).photos("a1")}
    assert held["p1"] == Photo("p1", "Beach", datetime(2026, 11, 27, 21, 10), (2048, 1365))
    assert held["p2"] == Photo("p2", "", None, (600, 400))


def test_an_old_listing_is_taken_again() -> None:
    album, lister, clock = photos()
    find(album, "a1", "Caption 2")
    lister.photos["a1"].append({"id": "p2", "name": "Caption 2"})
    clock.now += 2.5
    assert find(album, "a1", "Caption 2") == "p2"
    assert lister.calls == ["a1", "a1"]


def test_fresh_lists_again_whatever_is_held() -> None:
    album, lister, _ = photos()
    find(album, "a1", "Caption 2")
    lister.photos["a1"].append({"id": "p2", "name": "Caption 2"})
    assert find(album, "a1", "Caption 2", fresh=True) == "p2"
    assert len(lister.calls) == 2


def test_own_uploads_join_the_listing_held() -> None:
    album, lister, _ = photos()
    find(album, "a1", "Caption 1")
    album.add("a1", Photo("p3", "Caption 3", None, None))
    album.add("a2", Photo("q1", "Other 1", None, None))  # no listing held for a2: nothing to update
    assert find(album, "a1", "Caption 3") == "p3"
    assert lister.calls == ["a1"]


def test_albums_are_listed_apart() -> None:
    album, lister, _ = photos()
    find(album, "a1", "Caption 1")
    assert find(album, "a2", "Caption 1") is None
    assert lister.calls == ["a1", "a2"]


def test_concurrent_retries_of_an_album_wait_for_one_listing() -> None:
    album, lister, _ = photos()
    lister.gate = threading.Event()
    found: list[str | None] = []
    threads = [
        threading.Thread(target=lambda n=n: found.append(find(album, "a1", f"Caption {n}")))
        for n in (1, 10, 2, 1)
    ]
    for thread in threads:
        thread.start()
    lister.gate.set()
    for thread in threads:
        thread.join(5)
    assert sorted(found, key=str) == sorted(["p1", "p10", None, "p1"], key=str)
    assert lister.calls == ["a1"]


def test_retries_waiting_for_a_listing_that_fails_fail_with_it() -> None:
    album, lister, clock = photos()
    lister.gate = threading.Event()
    lister.error = TimeoutError("Graph did not answer")
    errors: list[BaseException] = []

    def retry() -> None:
        try:
            find(album, "a1", "Caption 1")
        except TimeoutError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(3)]
    for thread in threads:
        thread.start()
    while not lister.calls:
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)  # the others queue behind the listing in progress
    lister.gate.set()
    for thread in threads:
        thread.join(5)
    assert len(errors) == 3 and lister.calls == ["a1"]
    lister.error = None
    clock.now += 0.001
    assert find(album, "a1", "Caption 1") == "p1"  # a later retry lists again
