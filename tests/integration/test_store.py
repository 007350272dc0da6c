"""The store on SQLite and PostgreSQL: an album settles exactly once, however images race."""

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert

from shared import store as store_module
from shared.contracts.outgoing import Outgoing
from shared.store import (
    AmbiguousEmail,
    ImageView,
    OutboxMessage,
    Store,
    UserView,
    repository,
    tables,
)
from tests.integration.helpers import settled_of, upload_of
from tests.present import present

pytestmark = pytest.mark.integration


def new_album(store: Store, n: int) -> tuple[UserView, str, list[OutboxMessage]]:
    user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    album_id, rows = store.create_album(
        user.id, "Trip", None, [f"{user.prefix}{i}.png" for i in range(n)]
    )
    return user, album_id, rows


def test_an_album_is_recorded_with_one_outbox_message_per_image(store: Store) -> None:
    user, album_id, rows = new_album(store, 3)
    album = present(store.album(album_id, user.id))
    assert album.state == "publishing" and [i.state for i in album.images] == ["queued"] * 3
    bodies = [upload_of(row.body) for row in rows]
    assert [b.image_id for b in bodies] == [i.id for i in album.images]
    assert store.unpublished_count() >= 3


def test_another_users_album_is_not_found(store: Store) -> None:
    user, album_id, _ = new_album(store, 1)
    assert store.album(album_id, user.id + 1000) is None


def test_images_ending_at_once_settle_the_album_exactly_once(store: Store) -> None:
    _, album_id, _ = new_album(store, 20)
    images = present(store.album(album_id)).images
    for image in images:
        store.start_attempt(image.id)
    settled = []
    barrier = threading.Barrier(len(images))

    def end(image: ImageView) -> None:
        barrier.wait()
        if image.id % 3:
            settled.extend(store.record_uploaded(image.id, f"p{image.id}"))
        else:
            settled.extend(store.record_failed(image.id, "refused", 324))

    threads = [threading.Thread(target=end, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(settled) == 1
    event = settled_of(settled[0].body)
    assert len(event.uploaded) + len(event.failed) == 20
    assert present(store.album(album_id)).state == "done_with_failures"


def test_an_ended_image_is_never_started_or_ended_again(store: Store) -> None:
    _, album_id, _ = new_album(store, 2)
    first, second = present(store.album(album_id)).images
    store.start_attempt(first.id)
    store.record_uploaded(first.id, "p1")
    assert store.start_attempt(first.id) == store_module.Start(None, 0.0)
    assert store.record_failed(first.id, "late duplicate", 2) == []
    assert present(store.image(first.id)).photo_id == "p1"
    with pytest.raises(LookupError):
        store.start_attempt(10**9)
    assert present(store.album(album_id)).state == "publishing"


def test_a_failure_writes_its_dead_letter_in_the_same_transaction(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    (image,) = present(store.album(album_id)).images
    letter = Outgoing("albums.dead", "image.upload", b"{}", headers={"dead-reason": "refused"})
    rows = store.record_failed(image.id, "refused", 324, letter)
    assert [row.routing_key for row in rows] == ["image.upload", "album.settled"]
    assert rows[0].outgoing().headers == {"dead-reason": "refused"}


def test_only_one_worker_creates_the_facebook_album(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    claims = [store.claim_fb_album(album_id, timedelta(seconds=60)) for _ in range(3)]
    assert [(c.fb_album_id, c.mine) for c in claims] == [(None, True), (None, False), (None, False)]
    store.set_fb_album(album_id, "fb1")
    assert store.claim_fb_album(album_id, timedelta(seconds=60)).fb_album_id == "fb1"


def test_the_first_attempt_of_an_album_claims_its_facebook_album_in_the_same_step(
    store: Store,
) -> None:
    _, album_id, _ = new_album(store, 3)
    first, second, third = present(store.album(album_id)).images
    taken = store.start_attempt(first.id)
    assert (taken.attempt, taken.album_title) == (1, "Trip")
    assert taken.fb_album == store_module.FbAlbumClaim(None, True, False)
    assert store.start_attempt(second.id).fb_album == store_module.FbAlbumClaim(None, False, False)
    store.set_fb_album(album_id, "fb1")
    assert store.start_attempt(third.id).fb_album == store_module.FbAlbumClaim("fb1", False, False)


def test_a_claim_whose_owner_died_is_taken_over_and_says_so(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    assert store.claim_fb_album(album_id, timedelta(seconds=60)).taken_over is False
    claim = store.claim_fb_album(album_id, timedelta(0))
    assert claim.mine and claim.taken_over


def test_the_first_facebook_album_recorded_stays_recorded(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    assert store.set_fb_album(album_id, "fb1") == "fb1"
    # A create that landed late (its claim was taken over) must not move the album.
    assert store.set_fb_album(album_id, "fb2") == "fb1"
    assert present(store.album(album_id)).fb_album_id == "fb1"


def test_an_uncertain_create_keeps_its_claim_until_it_lapses(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    stale = timedelta(seconds=130)
    assert store.claim_fb_album(album_id, stale).mine
    store.release_fb_album_claim(album_id, uncertain=True)
    waiting = store.claim_fb_album(album_id, stale)
    assert (waiting.mine, waiting.uncertain) == (False, True)
    assert store.claim_fb_album(album_id, timedelta(0)) == store_module.FbAlbumClaim(
        None, True, True
    )
    # A create that surely failed frees the claim: the next claimer creates without looking.
    store.release_fb_album_claim(album_id)
    assert store.claim_fb_album(album_id, stale) == store_module.FbAlbumClaim(None, True, False)


def test_claim_times_are_the_databases_not_the_hosts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, album_id, _ = new_album(store, 1)
    # This host's clock runs 10 minutes slow: its claim must not look 10 minutes old to the
    # other hosts, which would take it over while its create is in flight.
    slow = tables.utcnow() - timedelta(minutes=10)
    monkeypatch.setattr(repository, "utcnow", lambda: slow)
    assert store.claim_fb_album(album_id, timedelta(seconds=130)).mine
    monkeypatch.undo()
    assert not store.claim_fb_album(album_id, timedelta(seconds=130)).mine


def test_an_image_in_flight_is_not_taken_twice_until_its_lease_lapses(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    (image,) = present(store.album(album_id)).images
    assert store.start_attempt(image.id, timedelta(seconds=30)).attempt == 1
    busy = store.start_attempt(image.id, timedelta(seconds=30))
    assert busy.attempt is None and 25 < busy.busy_for <= 30
    store.renew_leases({image.id: 1}, timedelta(0))
    assert store.start_attempt(image.id, timedelta(seconds=30)).attempt == 2


def test_a_dead_attempt_may_reach_facebook_until_its_request_would_time_out(store: Store) -> None:
    _, album_id, _ = new_album(store, 1)
    (image,) = present(store.album(album_id)).images
    store.start_attempt(image.id, timedelta(0), timedelta(seconds=60))
    busy = store.start_attempt(image.id, timedelta(0), timedelta(seconds=60))
    assert busy.attempt is None and busy.busy_for > 55


def test_a_user_is_found_by_email_in_any_case(store: Store) -> None:
    # Each backend's lower(); where an old store holds two spellings, only an exact one.
    name = f"bob-{uuid.uuid4().hex[:8]}"  # its title() differs from its upper()
    bob, _ = store.create_user(f"{name}@example.com")
    assert store.create_user(f"{name.upper()}@EXAMPLE.com")[0].id == bob.id
    rotated = store.rotate_token(f"{name.upper()}@example.com")
    assert rotated is not None and rotated[0].id == bob.id
    with store.engine.begin() as connection:
        connection.execute(
            insert(tables.User).values(
                email=f"{name.upper()}@example.com", token_hash=uuid.uuid4().hex, prefix=""
            )
        )
    exact = store.set_role(f"{name.upper()}@example.com", "operator")
    assert exact is not None and exact.email == f"{name.upper()}@example.com"
    with pytest.raises(AmbiguousEmail):
        store.set_role(f"{name.title()}@example.com", None)
