"""Connecting a Facebook Page through the web pages and the JSON API, in-process: Facebook
Login is a fake that hands out Pages, the outbox a fake (tests/unit/test_web.py's)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from services.api import page_connect
from services.api.facebook_login import ManagedPage
from shared.contracts import messages
from tests.present import present

from .test_web import Env, csrf, make_env, sign_in

SECRET = "page-token-SECRET"


class FakeLogin:
    def __init__(self, pages: list[ManagedPage]) -> None:
        self.pages = pages
        self.codes: list[str] = []

    def dialog(self, redirect_uri: str, state: str) -> str:
        return f"https://fb.example/v24.0/dialog/oauth?redirect_uri={redirect_uri}&state={state}"

    def pages_for_code(self, code: str, redirect_uri: str) -> list[ManagedPage]:
        self.codes.append(code)
        return self.pages


@pytest.fixture()
def no_fallback() -> Env:
    """A multi-tenant install: no FACEBOOK_PAGE_ID/TOKEN."""
    return make_env(facebook_page_id="", api_sse_max_s=1.0)


@pytest.fixture()
def fb(monkeypatch: pytest.MonkeyPatch) -> FakeLogin:
    fake = FakeLogin([ManagedPage("777", "Ann's Bakery", SECRET)])
    monkeypatch.setattr(page_connect, "_login", lambda: fake)
    return fake


def signed_in(env: Env) -> FlaskClient:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    return client


def dialog_state(client: FlaskClient) -> str:
    answer = client.get("/connect/facebook")
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["Location"]).query)["state"][0]


def test_connecting_a_page_stores_its_token_encrypted_and_shows_it(
    no_fallback: Env, fb: FakeLogin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = signed_in(no_fallback)
    state = dialog_state(client)
    answer = client.get(f"/connect/facebook/callback?code=c1&state={state}")
    assert answer.status_code == 303 and fb.codes == ["c1"]
    page = present(no_fallback.store.page(no_fallback.user.id))
    assert (page.page_id, page.page_name, page.state) == (
        "777",
        "Ann's Bakery",
        "connected",
    )
    with no_fallback.store.engine.connect() as connection:
        (raw,) = connection.execute(text("SELECT token_sealed FROM page_connections")).one()
    assert SECRET.encode() not in bytes(raw)
    assert "Page: Ann&#39;s Bakery" in client.get("/albums").get_data(as_text=True)
    body = client.get(
        "/api/page", headers={"Authorization": f"Bearer {no_fallback.token}"}
    ).get_json()
    assert body["page"]["id"] == "777" and SECRET not in str(body)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("state", ["", "forged", "STATE-OF-ANOTHER-SESSION"])
def test_the_callback_refuses_a_state_it_did_not_sign_for_this_session(
    no_fallback: Env, fb: FakeLogin, state: str
) -> None:
    client = signed_in(no_fallback)
    if state == "STATE-OF-ANOTHER-SESSION":
        other = signed_in(no_fallback)
        state = dialog_state(other)
        dialog_state(client)  # this session asked too, with its own state
    answer = client.get(f"/connect/facebook/callback?code=c1&state={state}")
    assert answer.status_code == 400
    assert "not one we asked for" in answer.get_data(as_text=True)
    assert fb.codes == [] and no_fallback.store.page(no_fallback.user.id) is None


def test_a_state_is_used_once(no_fallback: Env, fb: FakeLogin) -> None:
    client = signed_in(no_fallback)
    state = dialog_state(client)
    assert client.get(f"/connect/facebook/callback?code=c1&state={state}").status_code == 303
    assert client.get(f"/connect/facebook/callback?code=c2&state={state}").status_code == 400


def test_several_pages_are_offered_to_pick_and_their_tokens_stay_sealed(
    no_fallback: Env, fb: FakeLogin
) -> None:
    fb.pages = [ManagedPage("1", "One", "tok-one-SECRET"), ManagedPage("2", "Two", SECRET)]
    client = signed_in(no_fallback)
    state = dialog_state(client)
    page = client.get(f"/connect/facebook/callback?code=c&state={state}")
    assert page.status_code == 200 and "Two" in page.get_data(as_text=True)
    cookie = client.get_cookie("albums_session")
    assert cookie is not None and "SECRET" not in cookie.value
    assert "SECRET" not in page.get_data(as_text=True)
    answer = client.post(
        "/connect/facebook/pick", data={"page_id": "2", "csrf_token": csrf(client)}
    )
    assert answer.status_code == 303
    assert present(no_fallback.store.page(no_fallback.user.id)).page_id == "2"


def test_publishing_without_a_page_is_a_clear_409_and_with_one_records_the_page(
    no_fallback: Env, fb: FakeLogin
) -> None:
    headers = {"Authorization": f"Bearer {no_fallback.token}"}
    body = {"title": "Trip", "images": [f"{no_fallback.user.prefix}a.png"]}
    client = no_fallback.app.test_client()
    refused = client.post("/api/albums", json=body, headers=headers)
    assert refused.status_code == 409
    assert "connect a Facebook Page first" in refused.get_json()["error"]
    assert no_fallback.store.albums(no_fallback.user.id) == []
    web = signed_in(no_fallback)
    web.get(f"/connect/facebook/callback?code=c&state={dialog_state(web)}")
    accepted = client.post("/api/albums", json=body, headers=headers)
    assert accepted.status_code == 202
    assert no_fallback.store.album_page(accepted.get_json()["id"]) == (no_fallback.user.id, "777")
    sent = no_fallback.services.fake_outbox.published
    assert sent and all(SECRET.encode() not in row.body for row in sent)


def test_a_page_waiting_for_a_reconnect_refuses_new_albums_and_a_reconnect_resumes(
    no_fallback: Env, fb: FakeLogin
) -> None:
    web = signed_in(no_fallback)
    web.get(f"/connect/facebook/callback?code=c&state={dialog_state(web)}")
    user = no_fallback.user
    album_id, _ = no_fallback.store.create_album(
        user.id, "T", None, [f"{user.prefix}a.png"], page_id="777"
    )
    (image_id,) = no_fallback.image_ids(album_id)
    no_fallback.store.pause_image(image_id, "waiting", 190, give_back_attempt=False)
    no_fallback.store.set_page_state(user.id, "777", "needs_reconnect")
    assert "reconnect your Page" in web.get("/albums").get_data(as_text=True)
    refused = no_fallback.app.test_client().post(
        "/api/albums",
        json={"title": "x", "images": [f"{user.prefix}a.png"]},
        headers={"Authorization": f"Bearer {no_fallback.token}"},
    )
    assert refused.status_code == 409 and "reconnected" in refused.get_json()["error"]
    fb.pages = [ManagedPage("777", "Ann's Bakery", "a-new-token")]
    web.get(f"/connect/facebook/callback?code=c2&state={dialog_state(web)}")
    (row,) = no_fallback.services.fake_outbox.published
    requeued = messages.decode(row.body)
    assert isinstance(requeued, messages.ImageUploadRequested) and requeued.image_id == image_id
    assert present(no_fallback.store.album(album_id)).images[0].state == "queued"


def test_disconnecting_deletes_the_token(no_fallback: Env, fb: FakeLogin) -> None:
    web = signed_in(no_fallback)
    web.get(f"/connect/facebook/callback?code=c&state={dialog_state(web)}")
    assert (
        web.post("/connect/facebook/disconnect", data={"csrf_token": csrf(web)}).status_code == 303
    )
    assert no_fallback.store.page(no_fallback.user.id) is None
    with no_fallback.store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM page_connections")).scalar() == 0
    assert "Connect a Facebook Page" in web.get("/albums").get_data(as_text=True)
