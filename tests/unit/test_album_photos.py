"""Reading an album back: one listing serves the album's retries for a while, no longer."""

from __future__ import annotations

import threading
from typing import Any

from services.uploader.album_photos import AlbumPhotos


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
    lister = Lister({"a1": [{"id": "p1", "name": "ref:x:1"}, {"id": "p10", "name": "ref:x:10"},
                           {"id": "p0"}]})
    clock = Clock()
    return AlbumPhotos(lister, ttl_s=2.5, clock=clock), lister, clock


def test_one_listing_answers_every_mark_within_its_time():
    album, lister, clock = photos()
    assert album.find("a1", "ref:x:1") == "p1"
    clock.now += 2.4
    assert album.find("a1", "ref:x:10") == "p10"
    assert album.find("a1", "ref:x:2") is None
    assert lister.calls == ["a1"]


def test_marks_are_whole_words():
    album, _, _ = photos()
    assert album.find("a1", "ref:x") is None


def test_an_old_listing_is_taken_again():
    album, lister, clock = photos()
    album.find("a1", "ref:x:2")
    lister.photos["a1"].append({"id": "p2", "name": "ref:x:2"})
    clock.now += 2.5
    assert album.find("a1", "ref:x:2") == "p2"
    assert lister.calls == ["a1", "a1"]


def test_fresh_lists_again_whatever_is_held():
    album, lister, _ = photos()
    album.find("a1", "ref:x:2")
    lister.photos["a1"].append({"id": "p2", "name": "ref:x:2"})
    assert album.find("a1", "ref:x:2", fresh=True) == "p2"
    assert len(lister.calls) == 2


def test_own_uploads_join_the_listing_held():
    album, lister, _ = photos()
    album.find("a1", "ref:x:1")
    album.add("a1", "ref:x:3", "p3")
    album.add("a2", "ref:y:1", "q1")  # no listing held for a2: nothing to update
    assert album.find("a1", "ref:x:3") == "p3"
    assert lister.calls == ["a1"]


def test_albums_are_listed_apart():
    album, lister, _ = photos()
    album.find("a1", "ref:x:1")
    assert album.find("a2", "ref:x:1") is None
    assert lister.calls == ["a1", "a2"]


def test_concurrent_retries_of_an_album_wait_for_one_listing():
    album, lister, _ = photos()
    lister.gate = threading.Event()
    found: list[str | None] = []
    threads = [threading.Thread(target=lambda n=n: found.append(album.find("a1", f"ref:x:{n}")))
               for n in (1, 10, 2, 1)]
    for thread in threads:
        thread.start()
    lister.gate.set()
    for thread in threads:
        thread.join(5)
    assert sorted(found, key=str) == sorted(["p1", "p10", None, "p1"], key=str)
    assert lister.calls == ["a1"]


def test_retries_waiting_for_a_listing_that_fails_fail_with_it():
    album, lister, clock = photos()
    lister.gate = threading.Event()
    lister.error = TimeoutError("Graph did not answer")
    errors: list[BaseException] = []

    def find() -> None:
        try:
            album.find("a1", "ref:x:1")
        except TimeoutError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=find) for _ in range(3)]
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
    assert album.find("a1", "ref:x:1") == "p1"  # a later retry lists again
