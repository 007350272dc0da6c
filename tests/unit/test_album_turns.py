"""Albums take turns (issue 10): an album keeps at most its window of images released to the
work queue and not yet ended; each image that ends releases the next, in the same transaction.

The real store on a SQLite file; tests/integration/test_album_turns_pg.py runs these on
PostgreSQL too."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import update

from shared.contracts import messages
from shared.delivery.outbox import Outbox
from shared.delivery.replay import Replayer
from shared.store import Store
from shared.store.tables import Image
from tests.present import present
from tests.unit.stores import new_store


@pytest.fixture
def store() -> Iterator[Store]:
    store = new_store()
    yield store
    store.dispose()


def publish(
    store: Store, n: int, window: int | None, **album: Any
) -> tuple[str, list[int], list[Any]]:
    """An album of `n` images; its id, its image ids in the album's order, its outbox rows."""
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id,
        "Trip",
        None,
        [f"{user.prefix}{i:03d}.png" for i in range(n)],
        window=window,
        **album,
    )
    view = store.album(album_id)
    assert view is not None
    return album_id, [image.id for image in view.images], rows


def uploads(rows: list[Any]) -> list[int]:
    """The image ids the rows ask to upload, in the order they were written."""
    bodies = [messages.decode(row.body) for row in rows]
    return [b.image_id for b in bodies if isinstance(b, messages.ImageUploadRequested)]


def swept(store: Store, ids: list[int], **how: Any) -> list[int]:
    """The sweeper's messages for these images (a shared database holds other tests' too)."""
    return [i for i in uploads(store.requeue_lost(**how)) if i in ids]


def upload(store: Store, image_id: int) -> list[Any]:
    attempt = store.start_attempt(image_id).attempt
    assert attempt is not None
    return store.record_uploaded(image_id, f"photo-{image_id}", attempt)


def states(store: Store, album_id: str) -> list[str]:
    view = store.album(album_id)
    assert view is not None
    return [image.state for image in view.images]


def test_only_the_first_window_of_images_gets_messages_the_others_show_queued(store: Store) -> None:
    album_id, ids, rows = publish(store, 7, window=3)
    assert uploads(rows) == ids[:3]
    assert states(store, album_id) == ["queued"] * 7  # waiting for a turn is still queued


def test_without_a_window_every_image_gets_its_message_at_once(store: Store) -> None:
    _, ids, rows = publish(store, 5, window=None)
    assert uploads(rows) == ids


def test_an_image_that_ends_releases_the_next_in_the_albums_order(store: Store) -> None:
    _, ids, _ = publish(store, 6, window=2)
    assert uploads(upload(store, ids[1])) == [ids[2]]
    failed = store.record_failed(ids[0], "refused", 324)  # failing ends it too
    assert uploads(failed) == [ids[3]]


def test_a_retrying_or_paused_image_keeps_its_slot(store: Store) -> None:
    album_id, ids, _ = publish(store, 4, window=2)
    store.start_attempt(ids[0])
    store.record_retrying(ids[0], "500", 500, timedelta(seconds=5))
    store.pause_image(ids[1], "token revoked", 190, give_back_attempt=False)
    assert swept(store, ids, quiet_for=timedelta(hours=1), queue_empty=False) == []
    assert states(store, album_id) == ["retrying", "paused", "queued", "queued"]


def test_a_reconnected_page_resumes_its_paused_images_but_not_those_waiting_their_turn(
    store: Store,
) -> None:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Trip", None, [f"{user.prefix}{i}.png" for i in range(5)], page_id="p1", window=2
    )
    ids = [image.id for image in present(store.album(album_id)).images]
    for image_id in ids[:2]:
        store.pause_image(image_id, "token revoked", 190, give_back_attempt=False)
    resumed = store.connect_page(user.id, "p1", "Page", b"sealed")
    assert uploads(resumed) == ids[:2]
    assert uploads(upload(store, ids[0])) == [ids[2]]


def test_the_album_settles_only_once_every_image_had_its_turn_and_ended(store: Store) -> None:
    album_id, ids, _ = publish(store, 5, window=2)
    settled = []
    for image_id in ids:
        rows = upload(store, image_id)
        settled += [r for r in rows if isinstance(messages.decode(r.body), messages.AlbumSettled)]
        if image_id != ids[-1]:
            assert present(store.album(album_id)).state == "publishing"
    assert len(settled) == 1 and present(store.album(album_id)).state == "done"


def test_a_post_album_asks_for_its_post_only_after_its_last_turn(store: Store) -> None:
    album_id, ids, _ = publish(store, 3, window=1, destination=("post", None))
    kinds = []
    for image_id in ids:
        kinds.append([type(messages.decode(r.body)).__name__ for r in upload(store, image_id)])
    assert kinds == [["ImageUploadRequested"], ["ImageUploadRequested"], ["FeedPostRequested"]]


def test_a_stopped_album_fails_its_waiting_images_and_a_retry_gives_them_turns(
    store: Store,
) -> None:
    album_id, ids, _ = publish(store, 6, window=2)
    store.start_attempt(ids[0])
    stopped = store.record_failed(ids[0], "token revoked", 190, stop_album=True)
    assert uploads(stopped) == []  # every waiting image failed with it: nothing to release
    assert present(store.album(album_id)).state == "done_with_failures"

    reopened = store.reopen_failed(album_id)
    assert uploads(reopened) == ids[:2]
    assert states(store, album_id) == ["queued"] * 6
    assert uploads(upload(store, ids[0])) == [ids[2]]


def test_a_replay_sends_no_message_for_an_image_waiting_its_turn(store: Store) -> None:
    album_id, ids, _ = publish(store, 4, window=2)
    assert uploads(store.resend_unfinished(album_id, ids)) == ids[:2]


def test_the_sweeper_never_sends_an_image_waiting_its_turn(store: Store) -> None:
    _, ids, _ = publish(store, 5, window=2)
    assert swept(store, ids, quiet_for=timedelta(0), queue_empty=True) == ids[:2]


def test_the_sweeper_releases_the_turns_of_an_album_left_with_room(store: Store) -> None:
    album_id, ids, _ = publish(store, 5, window=2)
    with store.engine.begin() as connection:  # what only a defect could leave: room, unused
        connection.execute(
            update(Image).where(Image.id.in_(ids[:2])).values(state="uploaded", photo_id="p")
        )
    assert swept(store, ids, quiet_for=timedelta(hours=1), queue_empty=False) == ids[2:4]
    assert swept(store, ids, quiet_for=timedelta(hours=1), queue_empty=False) == []


def test_a_copy_of_an_earlier_message_that_takes_a_waiting_image_takes_a_slot(store: Store) -> None:
    album_id, ids, _ = publish(store, 3, window=1)
    store.start_attempt(ids[0])
    store.record_failed(ids[0], "token revoked", 190, stop_album=True)
    store.reopen_failed(album_id)  # ids[0] released, ids[1:] wait
    assert store.start_attempt(ids[2]).attempt == 1  # an old copy of its message
    assert uploads(upload(store, ids[0])) == []  # ids[2] holds the slot now
    assert uploads(store.record_uploaded(ids[2], "photo", 1)) == [ids[1]]


def test_albums_take_turns_in_a_first_in_first_out_queue(store: Store) -> None:
    """Four uploads at once from one FIFO queue, a window of four: an album of five published
    after one of forty gets its photos in the next rounds, not after the forty."""
    queue: collections.deque[int] = collections.deque()
    big, _, rows = publish(store, 40, window=4)
    queue.extend(uploads(rows))
    small, small_ids, rows = publish(store, 5, window=4)
    queue.extend(uploads(rows))
    rounds, ended = 0, {}
    while queue:
        rounds += 1
        taken = [queue.popleft() for _ in range(min(4, len(queue)))]
        for image_id in taken:
            queue.extend(uploads(upload(store, image_id)))
            ended[image_id] = rounds
    assert present(store.album(small)).state == "done" and present(store.album(big)).state == "done"
    # Its ideal is 2 rounds; it waits one (the big album's first four, ahead of it in the
    # queue), and its fifth photo, released when its first ends, one more behind the big
    # album's next four. Without turns it waited for all forty: round 12.
    assert max(ended[i] for i in small_ids) == 4, ended
    assert rounds == 12  # and the big album lost nothing: 45 photos in ceil(45/4) rounds


class CommittedOutbox:
    """The outbox as the retry uses it: the rows it would publish, kept."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def send_committed(self, rows: list[Any]) -> bool:
        self.rows.extend(rows)
        return True


def test_a_retry_while_the_albums_window_is_full_answers_how_many_it_reopened(store: Store) -> None:
    """The page's retry while the album still publishes: its failed image is re-opened and
    waits for a slot. The answer counts the images re-opened, not the messages sent now (none:
    both slots are taken), which would say there was nothing to retry."""
    album_id, ids, _ = publish(store, 4, window=2)
    store.start_attempt(ids[0])
    store.record_failed(ids[0], "refused", 324)  # released ids[2]: ids[1] and ids[2] hold both
    outbox = CommittedOutbox()
    assert Replayer(store, cast(Outbox, outbox), "amqp://unused").retry_album(album_id) == 1
    assert states(store, album_id)[0] == "queued" and outbox.rows == []
    assert uploads(upload(store, ids[1])) == [ids[0]]  # its turn comes in the album's order


def test_a_retry_of_a_stopped_album_counts_every_image_it_reopened(store: Store) -> None:
    album_id, ids, _ = publish(store, 6, window=2)
    store.start_attempt(ids[0])
    store.record_failed(ids[0], "token revoked", 190, stop_album=True)
    outbox = CommittedOutbox()
    assert Replayer(store, cast(Outbox, outbox), "amqp://unused").retry_album(album_id) == 6
    assert uploads(outbox.rows) == ids[:2]
