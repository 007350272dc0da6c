"""Issue 14, P10: what a user sees costs a page, not their history or the album's size.

`GET /api/albums` and the albums page come a page at a time (a `next` cursor); an album page
shows a page of its photos; its live stream sends the whole album once, then only what changed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.api import album_pages as web
from tests.unit.test_web import Env, events_of, make_env, sign_in


@pytest.fixture()
def env() -> Env:
    return make_env(api_sse_max_s=1.0)


@pytest.fixture()
def client(env: Env) -> FlaskClient:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    return client


def _api(env: Env, query: str = "") -> Any:
    return env.app.test_client().get(
        f"/api/albums{query}", headers={"Authorization": f"Bearer {env.token}"}
    )


def _oldest_first(env: Env, album_ids: list[str]) -> list[str]:
    """The albums in the order the store gives them: by creation time, then, for albums made in
    the same millisecond (SQLite's clock), by id."""
    created = {album.id: album.created_at for album in map(env.store.album, album_ids) if album}
    return sorted(album_ids, key=lambda album_id: (created[album_id], album_id))


def test_the_api_lists_albums_a_page_at_a_time(env: Env) -> None:
    made = [env.album(f"Trip {n}", 1) for n in range(5)]
    seen: list[str] = []
    query = "?limit=2"
    pages = 0
    while True:
        body = _api(env, query).get_json()
        seen += [album["id"] for album in body["albums"]]
        pages += 1
        if body["next"] is None:
            break
        query = f"?limit=2&cursor={body['next']}"
    assert pages == 3 and sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    # Newest first, as before pages; albums made in the same millisecond (SQLite's clock) by id.
    assert seen == list(reversed(_oldest_first(env, made)))  # newest first, as before pages


def test_a_page_keeps_the_fields_clients_read(env: Env) -> None:
    album_id = env.album("Trip", 2)
    (first, _) = env.image_ids(album_id)
    env.store.record_uploaded(first, "7")
    body = _api(env).get_json()
    assert body["next"] is None
    (album,) = body["albums"]
    assert album["id"] == album_id and album["total"] == 2
    assert album["counts"] == {"uploaded": 1, "queued": 1} and album["state"] == "publishing"
    assert set(album) == {"id", "title", "state", "created_at", "counts", "total", "destination"}


@pytest.mark.parametrize(
    "query",
    [
        "?limit=",
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?limit=%C2%B2",
        "?limit=" + "1" * 5000,  # more digits than Python turns into an int
        "?limit=99999999999999999999999",
        "?cursor=nope",
        "?cursor=bm90LWEtZGF0ZXxhYmM",
    ],
)
def test_a_bad_limit_or_cursor_is_a_400_with_the_reason(env: Env, query: str) -> None:
    response = _api(env, query)
    assert response.status_code == 400
    assert re.match(r"(limit|cursor): ", response.get_json()["error"])


def test_the_albums_page_shows_a_page_and_links_to_older_ones(
    client: FlaskClient, env: Env
) -> None:
    made = [env.album(f"Trip {n:02d}", 1) for n in range(web.ALBUMS_PER_PAGE + 3)]
    page = client.get("/albums").get_data(as_text=True)
    assert page.count('class="card album-row"') == web.ALBUMS_PER_PAGE
    older = re.search(r'href="([^"]+)" rel="next">Older albums', page)
    assert older, page
    rest = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert rest.count('class="card album-row"') == 3 and "Older albums" not in rest
    assert all(f"/albums/{album_id}" in rest for album_id in _oldest_first(env, made)[:3])


def test_an_album_page_shows_a_page_of_its_photos(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Big", web.PHOTOS_PER_PAGE + 4)
    page = client.get(f"/albums/{album_id}").get_data(as_text=True)
    assert page.count('class="photo"') == web.PHOTOS_PER_PAGE
    assert f"Photos 1–{web.PHOTOS_PER_PAGE} of {web.PHOTOS_PER_PAGE + 4}" in page
    second = client.get(f"/albums/{album_id}?photos=2").get_data(as_text=True)
    indexes = re.findall(r'class="photo" data-state="queued" data-index="(\d+)"', second)
    assert indexes == [str(web.PHOTOS_PER_PAGE + i) for i in range(4)]
    assert f"{web.PHOTOS_PER_PAGE + 4} to go" in second  # the counts are the album's


def test_a_photos_page_past_the_last_photo_is_a_404(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Small", 3)
    response = client.get(f"/albums/{album_id}?photos=25", headers={"Accept": "text/html"})
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert "no page 25 of photos" in response.get_data(as_text=True)


@pytest.mark.parametrize("photos", ["0", "abc", "1000000", "9" * 5000, "99999999999999999999999"])
def test_a_photos_page_out_of_range_is_a_400_naming_it(
    client: FlaskClient, env: Env, photos: str
) -> None:
    album_id = env.album("Big", 2)
    response = client.get(f"/albums/{album_id}?photos={photos}", headers={"Accept": "text/html"})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "photos: a whole number from 1 to" in response.get_data(as_text=True)


def test_the_stream_sends_the_album_then_only_the_changed_images(
    client: FlaskClient, env: Env
) -> None:
    album_id = env.album("Busy", 5)
    ids = env.image_ids(album_id)
    env.clock.at(0.3, lambda: env.store.start_attempt(ids[2]))
    env.clock.at(0.8, lambda: env.store.record_uploaded(ids[2], "42"))
    events = events_of(client.get(f"/albums/{album_id}/events").get_data(as_text=True))
    assert [kind for kind, _ in events] == ["album", "changes", "changes"]
    (_, full), (_, started), (_, uploaded) = events
    assert len(full["images"]) == 5 and full["images"][2]["index"] == 2
    assert [image["index"] for image in started["images"]] == [2]
    assert started["images"][0]["state"] == "uploading" and set(started["album"]) == {"counts"}
    assert [image["state"] for image in uploaded["images"]] == ["uploaded"]
    assert uploaded["album"]["uploaded"] == 1 and "images" not in uploaded["album"]
    assert "title" not in uploaded["album"]  # unchanged fields are not sent again
