"""The dead-letter desk in-process: the store's index of letters (written with the failure),
the operator's pages and actions, the audit, the stuck albums, and who may see them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.contracts import messages, topology
from shared.contracts.dead_letters import dead_letter
from shared.contracts.outgoing import Outgoing
from shared.store import ImageState
from tests.unit.test_web import REFUSED, Env, csrf, make_env, sign_in


@pytest.fixture()
def env() -> Env:
    return make_env()


def _letter(
    album_id: str, image_id: int, key: str, reason: str = REFUSED, code: int | None = 324
) -> Outgoing:
    body = messages.encode(
        messages.ImageUploadRequested(album_id=album_id, image_id=image_id, key=key)
    )
    return dead_letter(topology.IMAGE_UPLOADS, body, {"fence": 1}, reason, code, 1)


def _fail(env: Env, album_id: str, index: int = 0) -> Outgoing:
    album = env.store.album(album_id)
    assert album is not None
    image = album.images[index]
    env.store.start_attempt(image.id)
    letter = _letter(album_id, image.id, image.key)
    env.store.record_failed(image.id, REFUSED, 324, letter)
    return letter


def _operator(env: Env) -> FlaskClient:
    env.store.set_role(env.user.email, "operator")
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    return client


def test_a_failure_indexes_its_dead_letter_in_the_same_transaction(env: Env) -> None:
    album_id = env.album("Trip", 2)
    letter = _fail(env, album_id)
    (group,) = env.store.letter_groups()
    assert (group.name, group.count) == ("refused: code 324", 1)
    assert group.first_seen == group.last_seen
    indexed = env.store.dead_letter(letter.message_id)
    assert indexed is not None and indexed.body == letter.body
    assert indexed.headers["dead-reason"] == REFUSED and indexed.state == "waiting"
    assert (indexed.album_id, indexed.queue) == (album_id, topology.IMAGE_UPLOADS.name)


def test_a_failure_that_did_not_end_the_image_indexes_nothing(env: Env) -> None:
    """The letter's row goes with the image's end: an attempt already ended writes neither."""
    album_id = env.album("Trip", 1)
    _fail(env, album_id)
    image_id = env.image_ids(album_id)[0]
    env.store.record_failed(image_id, REFUSED, 324, _letter(album_id, image_id, "k"))
    assert env.store.letter_groups()[0].count == 1


def test_poison_is_indexed_once_as_poison(env: Env) -> None:
    letter = dead_letter(topology.IMAGE_UPLOADS, b"\xff not json", {}, "undecodable", None, 1)
    env.store.index_dead_letters([letter], poison=True)
    env.store.index_dead_letters([letter], poison=True)  # a redelivery: still one
    (group,) = env.store.letter_groups()
    assert (group.name, group.count) == ("poison", 1)


@pytest.mark.parametrize(
    "body", [b"[" * 60_000, b'{"n": 1' + b"0" * 5000 + b"}"], ids=["deep", "long number"]
)
def test_a_poison_letter_that_json_cannot_read_is_shown_as_text(env: Env, body: bytes) -> None:
    """The desk shows what the parser refuses (nested past its recursion limit, a number past
    int()'s digits) as the text it is, not a 500."""
    letter = dead_letter(topology.IMAGE_UPLOADS, body, {}, "undecodable", None, 1)
    env.store.index_dead_letters([letter], poison=True)
    page = _operator(env).get(f"/operator/dead-letters/{letter.message_id}")
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    assert body[-90:-1].decode() in page.get_data(as_text=True)


def test_an_end_user_gets_403_and_a_stranger_the_sign_in(env: Env) -> None:
    user = env.app.test_client()
    assert sign_in(user, env.token).status_code == 303
    assert user.get("/operator/dead-letters").status_code == 403
    assert user.get("/operator/stuck").status_code == 403
    stranger = env.app.test_client().get("/operator/dead-letters", headers={"Accept": "text/html"})
    assert stranger.status_code == 302 and "/login" in stranger.location


def test_an_operator_opens_a_letter_and_replays_it_once(env: Env) -> None:
    album_id = env.album("Trip", 2)
    letter = _fail(env, album_id)
    client = _operator(env)
    desk = client.get("/operator/dead-letters").get_data(as_text=True)
    assert "refused: code 324" in desk
    page = client.get(f"/operator/dead-letters/{letter.message_id}").get_data(as_text=True)
    assert "dead-reason" in page and album_id in page and "image.upload_requested" in page
    token = csrf(client)
    answer = client.post(
        f"/operator/dead-letters/{letter.message_id}/replay", data={"csrf_token": token}
    )
    assert answer.status_code == 303
    album = env.store.album(album_id)
    assert album is not None and album.images[0].state == ImageState.QUEUED
    sent = env.services.fake_outbox.published
    assert [row.routing_key for row in sent] == [topology.IMAGE_UPLOADS.routing_key]
    replayed = env.store.dead_letter(letter.message_id)
    assert replayed is not None and replayed.state == "replayed"
    assert replayed.handled_by == env.user.email
    assert env.store.letter_groups() == []
    again = client.post(
        f"/operator/dead-letters/{letter.message_id}/replay",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "nothing done" in again.get_data(as_text=True)
    assert len(env.services.fake_outbox.published) == 1
    audit = env.store.audit_log()
    assert [(a.operator, a.action, a.target, a.count) for a in audit] == [
        (env.user.email, "replay", f"letter {letter.message_id}", 0),
        (env.user.email, "replay", f"letter {letter.message_id}", 1),
    ]


def test_a_post_without_the_csrf_token_is_refused(env: Env) -> None:
    letter = _fail(env, env.album("Trip", 1))
    client = _operator(env)
    answer = client.post(f"/operator/dead-letters/{letter.message_id}/purge")
    assert answer.status_code == 400
    indexed = env.store.dead_letter(letter.message_id)
    assert indexed is not None and indexed.state == "waiting"


HUGE = "99999999999999999999999"  # past any 64-bit integer: the store's driver cannot hold it


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"/operator/dead-letters?page={HUGE}", "page"),
        (f"/operator/stuck?page={HUGE}", "page"),
        (f"/operator/dead-letters/groups/refused?code=324&page={HUGE}", "page"),
        (f"/operator/dead-letters/groups/refused?code={HUGE}", "code"),
        (f"/operator/dead-letters/groups/refused?code={'9' * 5000}", "code"),
        ("/operator/dead-letters/groups/refused?code=2147483648", "code"),
        (f"/operator/dead-letters?page={'1' * 5000}", "page"),
        ("/operator/dead-letters?page=0", "page"),
        ("/operator/dead-letters?page=abc", "page"),
        ("/operator/dead-letters/groups/refused?code=abc", "code"),
    ],
)
def test_a_number_out_of_range_in_a_query_is_a_400_naming_it(
    env: Env, path: str, name: str
) -> None:
    _fail(env, env.album("Trip", 1))
    answer = _operator(env).get(path, headers={"Accept": "text/html"})
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert f"{name}: a whole number from" in answer.get_data(as_text=True)


@pytest.mark.parametrize("code", [HUGE, "9" * 5000, "-2147483649", "abc"])
def test_a_group_action_with_a_code_out_of_range_is_a_400_and_does_nothing(
    env: Env, code: str
) -> None:
    letter = _fail(env, env.album("Trip", 1))
    client = _operator(env)
    answer = client.post(
        "/operator/dead-letters/groups/refused/purge",
        data={"code": code, "csrf_token": csrf(client)},
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert "code: a whole number from" in answer.get_data(as_text=True)
    indexed = env.store.dead_letter(letter.message_id)
    assert indexed is not None and indexed.state == "waiting"


def test_a_page_within_range_still_answers(env: Env) -> None:
    _fail(env, env.album("Trip", 1))
    client = _operator(env)
    assert client.get("/operator/dead-letters?page=999999").status_code == 200
    assert client.get("/operator/dead-letters/groups/refused?code=324&page=2").status_code == 200
    assert client.get("/operator/dead-letters/groups/refused?code=none").status_code == 404


def test_a_group_purge_takes_the_groups_letters_only_and_is_audited(env: Env) -> None:
    album_id = env.album("Trip", 3)
    _fail(env, album_id, 0)
    _fail(env, album_id, 1)
    other = env.image_ids(album_id)[2]
    env.store.start_attempt(other)
    env.store.record_failed(
        other,
        "gave up after 5 attempts: HTTP 500",
        2,
        _letter(album_id, other, "k", "gave up after 5 attempts: HTTP 500", 2),
    )
    client = _operator(env)
    groups = {g.name: g.count for g in env.store.letter_groups()}
    assert groups == {"refused: code 324": 2, "gave up: code 2": 1}
    answer = client.post(
        "/operator/dead-letters/groups/refused/purge",
        data={"csrf_token": csrf(client), "code": "324"},
        follow_redirects=True,
    )
    assert "Purged 2 dead letters." in answer.get_data(as_text=True)
    assert {g.name for g in env.store.letter_groups()} == {"gave up: code 2"}
    assert env.services.fake_outbox.published == []  # a purge sends nothing
    (entry,) = env.store.audit_log()
    assert (entry.action, entry.target, entry.count) == ("purge", "group refused: code 324", 2)
    assert "group refused: code 324" in client.get("/operator/dead-letters").get_data(as_text=True)


def test_an_albums_letters_replay_together(env: Env) -> None:
    album_id = env.album("Trip", 2)
    _fail(env, album_id, 0)
    _fail(env, album_id, 1)
    client = _operator(env)
    client.post(f"/operator/albums/{album_id}/replay", data={"csrf_token": csrf(client)})
    album = env.store.album(album_id)
    assert album is not None and {i.state for i in album.images} == {ImageState.QUEUED}
    assert env.store.letter_groups() == []


def test_a_stale_letter_replays_as_nothing(env: Env) -> None:
    """The album page's retry re-opened the image since: the letter is stale, sends nothing."""
    album_id = env.album("Trip", 1)
    letter = _fail(env, album_id)
    env.store.retry_failed(album_id)
    image_id = env.image_ids(album_id)[0]
    env.store.start_attempt(image_id)
    env.store.record_uploaded(image_id, "photo-1")
    client = _operator(env)
    client.post(
        f"/operator/dead-letters/{letter.message_id}/replay", data={"csrf_token": csrf(client)}
    )
    assert env.services.fake_outbox.published == []
    indexed = env.store.dead_letter(letter.message_id)
    assert indexed is not None and indexed.state == "replayed"
    # The notice says nothing was sent, not only "Replayed 1 dead letter."
    notice = client.get(f"/operator/dead-letters/{letter.message_id}").get_data(as_text=True)
    assert "Replayed 1 dead letter (1 stale: its image was queued again since" in notice


def test_stuck_albums_show_what_each_image_waits_for(env: Env) -> None:
    stuck_id = env.album("Stuck trip", 2)
    fine_id = env.album("Fine trip", 1)
    first = env.image_ids(stuck_id)[0]
    env.store.start_attempt(first, lease=timedelta(seconds=-600))  # its lease ran out long ago
    env.store.start_attempt(env.image_ids(fine_id)[0], lease=timedelta(seconds=600))
    env.store.record_failed(env.image_ids(stuck_id)[1], REFUSED, 324)
    (album,) = env.store.stuck_albums(timedelta(seconds=300))
    assert album.album_id == stuck_id
    assert [(i.state, i.waiting_for) for i in album.images] == [
        (ImageState.UPLOADING, "its attempt to end (lease)")
    ]
    page = _operator(env).get("/operator/stuck").get_data(as_text=True)
    assert "Stuck trip" in page and "Fine trip" not in page
    assert re.search(r"its attempt to end \(lease\)", page)
    assert env.store.stuck_albums(timedelta(seconds=3600)) == []
    assert ImageState.FAILED in {i.state for i in env.store.album(stuck_id).images}  # type: ignore[union-attr]


def test_make_operator_gives_an_existing_user_the_role(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.api.__main__ import create_user, make_operator
    from services.api.settings import ApiSettings

    settings = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path}/cli.db",
    )
    create_user(settings, "eve@example.com")
    assert '"role": "user"' in capsys.readouterr().out
    make_operator(settings, "eve@example.com")
    assert '"role": "operator"' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no user nobody@example.com"):
        make_operator(settings, "nobody@example.com")
    create_user(settings, "op@example.com", operator=True)
    assert '"role": "operator"' in capsys.readouterr().out


def test_an_oversized_poison_body_is_kept_cut_to_the_messages_limit(env: Env) -> None:
    letter = dead_letter(topology.IMAGE_UPLOADS, b"x" * (2 * 1024 * 1024), {}, "too big", None, 1)
    env.store.index_dead_letters([letter], poison=True)
    indexed = env.store.dead_letter(letter.message_id)
    assert indexed is not None and len(indexed.body) == messages.MAX_BODY_BYTES


def test_a_failure_of_the_bucket_is_a_group_of_its_own_not_a_facebook_refusal() -> None:
    """S3's status is the letter's code too: "refused: code 404" read as Facebook's."""
    from shared.store.dead_letter_index import group_name, kind_of

    for reason in (
        "not found in the bucket",
        "access to the bucket was denied",
        "the bucket refused the request (InvalidObjectState)",
    ):
        assert group_name(kind_of(reason), 404) == "bucket: code 404", reason
    assert kind_of("Facebook refused the image: rejected image (code 324)") == "refused"
    assert kind_of("gave up after 3 attempts: the bucket is temporarily unavailable") == "gave up"
