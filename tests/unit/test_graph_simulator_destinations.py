"""The Graph simulator's destinations (issue 10, items 2 and 7): Page album creation refused as
today's Facebook refuses it, photos uploaded unpublished to the Page, and one feed post that
attaches them, with their expiry. Flask's test client: no server, no network."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from dev.graph_simulator import PageSettings, create_app
from dev.images import png

PAGE = "1000000000000001"
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(**page: Any) -> FlaskClient:
    return create_app(PAGE, TOKEN, page=PageSettings(**page)).test_client()


def _unpublished(client: FlaskClient, seed: int = 0) -> str:
    answer = client.post(
        f"/v24.0/{PAGE}/photos",
        headers=AUTH,
        data={
            "published": "false",
            "caption": "c",
            "source": (io.BytesIO(png(4, 4, seed)), f"{seed}.png", "image/png"),
        },
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert set(body) == {"id"}  # Facebook promises only the photo id for an unpublished one
    return str(body["id"])


def _feed(client: FlaskClient, message: str, ids: list[str]) -> Any:
    data = {f"attached_media[{i}]": json.dumps({"media_fbid": fbid}) for i, fbid in enumerate(ids)}
    return client.post(f"/v24.0/{PAGE}/feed", headers=AUTH, data={"message": message, **data})


def test_album_creation_refused_for_good_when_switched_on() -> None:
    client = _client(refuse_album_creation=True)
    answer = client.post(f"/v24.0/{PAGE}/albums", headers=AUTH, data={"name": "Trip"})
    error = answer.get_json()["error"]
    assert answer.status_code == 403
    assert error["code"] == 200 and error["is_transient"] is False
    assert "deprecated" in error["message"]
    assert client.get("/_sim/albums").get_json()["albums"] == []


def test_album_creation_allowed_when_switched_off() -> None:
    client = _client(refuse_album_creation=False)
    answer = client.post(f"/v24.0/{PAGE}/albums", headers=AUTH, data={"name": "Trip"})
    assert answer.status_code == 200 and answer.get_json()["id"]


def test_page_settings_change_at_run_time_and_reset_restores_them() -> None:
    client = _client(refuse_album_creation=False)
    assert client.put("/_sim/page", json={"refuse_album_creation": True}).status_code == 200
    assert client.post(f"/v24.0/{PAGE}/albums", headers=AUTH, data={"name": "T"}).status_code == 403
    assert client.put("/_sim/page", json={"refuse_album_creation": "yes"}).status_code == 400
    client.post("/_sim/reset")
    assert client.get("/_sim/page").get_json()["refuse_album_creation"] is False


def test_album_creation_is_refused_by_default_as_on_todays_facebook() -> None:
    assert PageSettings().refuse_album_creation is True
    assert PageSettings.from_env({}).refuse_album_creation is True
    answer = (
        create_app(PAGE, TOKEN)
        .test_client()
        .post(f"/v24.0/{PAGE}/albums", headers=AUTH, data={"name": "Trip"})
    )
    assert answer.status_code == 403


def test_page_settings_from_the_environment() -> None:
    settings = PageSettings.from_env(
        {"REFUSE_ALBUM_CREATION": "true", "UNPUBLISHED_PHOTO_TTL_S": "60"}
    )
    assert settings == PageSettings(True, 60.0)
    with pytest.raises(ValueError, match="REFUSE_ALBUM_CREATION"):
        PageSettings.from_env({"REFUSE_ALBUM_CREATION": "maybe"})


def test_unpublished_photos_become_one_post_and_are_in_no_album() -> None:
    client = _client(refuse_album_creation=False)
    album = client.post(f"/v24.0/{PAGE}/albums", headers=AUTH, data={"name": "A"}).get_json()["id"]
    ids = [_unpublished(client, seed) for seed in range(3)]
    assert client.get(f"/v24.0/{album}/photos", headers=AUTH).get_json()["data"] == []

    answer = _feed(client, "Trip", ids)
    assert answer.status_code == 200, answer.get_json()
    post_id = answer.get_json()["id"]
    assert post_id.startswith(f"{PAGE}_")
    [post] = client.get("/_sim/posts").get_json()["posts"]
    assert post["attached_media"] == ids and post["message"] == "Trip"
    listed = client.get(f"/v24.0/{PAGE}/posts", headers=AUTH).get_json()["data"]
    assert [(p["id"], p["message"]) for p in listed] == [(post_id, "Trip")]


def test_a_photo_is_attached_once() -> None:
    client = _client()
    photo = _unpublished(client)
    assert _feed(client, "first", [photo]).status_code == 200
    again = _feed(client, "second", [photo])
    assert again.status_code == 400 and again.get_json()["error"]["code"] == 100
    assert len(client.get("/_sim/posts").get_json()["posts"]) == 1


def test_expired_unpublished_photos_cannot_be_posted() -> None:
    client = _client(unpublished_ttl_s=0.0)
    photo = _unpublished(client)
    answer = _feed(client, "late", [photo])
    assert answer.status_code == 400
    assert "expired" in answer.get_json()["error"]["message"]
    assert client.get("/_sim/posts").get_json()["posts"] == []


def test_feed_post_without_media_or_with_bad_media_is_refused() -> None:
    client = _client()
    assert _feed(client, "empty", []).status_code == 400
    bad = client.post(
        f"/v24.0/{PAGE}/feed", headers=AUTH, data={"message": "m", "attached_media[0]": "not json"}
    )
    assert bad.status_code == 400 and "media_fbid" in bad.get_json()["error"]["message"]
