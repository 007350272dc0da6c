"""The desk's index on SQLite and PostgreSQL: written with the failure, grouped with counts,
marked and audited once, and the stuck albums' query."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contracts import topology
from shared.contracts.dead_letters import dead_letter
from shared.store import Store
from tests.integration.helpers import upload_of

pytestmark = pytest.mark.integration


def test_index_groups_marks_and_stuck_albums(store: Store) -> None:
    user, _ = store.create_user("ops-index@example.com")
    album_id, rows = store.create_album(
        user.id, "t", None, [f"{user.prefix}{n}.png" for n in range(3)]
    )
    ids = [upload_of(row.body).image_id for row in rows]
    letters = []
    for image_id, row in zip(ids[:2], rows, strict=False):
        store.start_attempt(image_id)
        letter = dead_letter(topology.IMAGE_UPLOADS, row.body, row.headers, "refused", 324, 1)
        store.record_failed(image_id, "refused", 324, letter)
        letters.append(letter.message_id)
    (group,) = store.letter_groups()
    assert (group.name, group.count) == ("refused: code 324", 2)
    assert [x.message_id for x in store.group_letters("refused", 324)] == letters
    assert store.settle_letters(letters, "purged", "op@example.com", "purge", "album") == 2
    assert store.settle_letters(letters, "purged", "op@example.com", "purge", "album") == 0
    assert store.letter_states(letters) == dict.fromkeys(letters, "purged")
    assert [(a.action, a.count) for a in store.audit_log()] == [("purge", 0), ("purge", 2)]

    store.start_attempt(ids[2], lease=timedelta(seconds=-900))
    (stuck,) = store.stuck_albums(timedelta(seconds=60))
    assert stuck.album_id == album_id and [i.image_id for i in stuck.images] == [ids[2]]
    assert store.stuck_albums(timedelta(hours=1)) == []
