"""The user's pages in-process: sign-in, CSRF, publishing, the live album page, its event
stream, retry and thumbnails (no broker: the outbox is a fake).

Fast by construction (issue 9): S3 is the in-memory FakeS3 (moto's import and a boto3 client
cost about a second; tests/integration/test_fake_s3_contract.py holds the fake to moto's
answers), and the stream tests move a clock by hand instead of waiting on real time."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from pydantic import SecretStr

from dev.images import png
from services.api import album_events, rate_limits
from services.api.album_model import plain_reason
from services.api.app import create_app
from services.api.fake_page_albums import FakePageAlbums
from services.api.services import Services
from services.api.settings import ApiSettings
from shared.adapters.fake_s3 import FakeS3
from shared.delivery.replay import Replayer
from shared.store import Store, UserView
from tests.unit.shared_templates import SharedTemplates
from tests.unit.stores import new_store, url_of

BUCKET = "albums-unit"
REFUSED = "Facebook refused the image: rejected image (code 324)"


class FakeOutbox:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def send_rows(self, rows: list[Any]) -> bool:
        self.published.extend(rows)
        return True

    def send_committed(self, rows: list[Any]) -> bool:
        return self.send_rows(rows)

    def send_unrecorded(self, messages: list[Any]) -> None:
        self.published.extend(messages)

    def broker_connected(self, wait_s: float) -> bool:
        return True


class FakeReplayer:
    """Re-opens like the real one; the dead-letter queue it would also empty is the broker's."""

    def __init__(self, store: Store, outbox: FakeOutbox | None = None) -> None:
        self.store = store
        self.outbox = outbox or FakeOutbox()

    def retry_album(self, album_id: str) -> int:
        return self.store.retry_failed(album_id).images

    def replay_indexed(self, letters: Any) -> Any:
        """The real replay from the desk's index: it reads no queue, only the store."""
        return Replayer(self.store, self.outbox, "amqp://unused").replay_indexed(letters)  # type: ignore[arg-type]


class ManualClock:
    """Time that moves only when the code under test sleeps; `at` runs a change at a moment."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, Callable[[], Any]]] = []

    def at(self, moment: float, action: Callable[[], Any]) -> None:
        self._due.append((moment, action))

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for due in sorted((d for d in self._due if d[0] <= self.now), key=lambda d: d[0]):
            self._due.remove(due)
            due[1]()


class FakeServices(Services):
    def __init__(self, settings: ApiSettings, store: Store, s3_client: Any = None) -> None:
        super().__init__(settings, store, clock=ManualClock())
        self.fake_outbox = FakeOutbox()
        self._s3 = s3_client  # None: built on first use, as in production
        # No Page has albums: the publish page would otherwise ask Facebook for them.
        self._page_albums = FakePageAlbums()

    @property
    def outbox(self) -> Any:
        return self.fake_outbox

    @property
    def replayer(self) -> Any:
        return FakeReplayer(self.store, self.fake_outbox)


@dataclass
class Env:
    app: Flask
    store: Store
    services: FakeServices
    user: UserView
    token: str

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.services.clock, ManualClock)
        return self.services.clock

    def put(self, key: str, body: bytes) -> None:
        self.services.s3.put_object(Bucket=self.services.settings.s3_bucket, Key=key, Body=body)

    def album(self, title: str, count: int, user: UserView | None = None) -> str:
        owner = user or self.user
        keys = [f"{owner.prefix}trip/photo-{n}.png" for n in range(count)]
        album_id, _rows = self.store.create_album(owner.id, title, None, keys)
        return album_id

    def image_ids(self, album_id: str) -> list[int]:
        album = self.store.album(album_id)
        assert album is not None
        return [image.id for image in album.images]


#: The Fernet key the unit apps seal Page tokens with and the key signing their session cookies
#: (none is generated under var/; tests/unit/test_sessions.py tests the generated ones).
#: The unit apps' compiled templates, shared by every app a test builds.
TEMPLATES = SharedTemplates()
TOKEN_KEY = "fLjyrUJr8Ku8PZ3I6lHOxiJEeP6r6Lw3-4A1LnUqlxw="
SESSION_KEY = "unit-session-key-not-a-secret"


def make_env(s3_client: Any = None, **settings: Any) -> Env:
    """An app on a store and a bucket of its own (a FakeS3 unless `s3_client` is given); a
    one-tenant install (FACEBOOK_PAGE_ID/TOKEN set) unless `settings` say otherwise. Its
    store holds one user, Ann."""
    return seeded_env(_ann, s3_client, **settings)


def seeded_env(
    seed: Callable[[Store], tuple[UserView, str]], s3_client: Any = None, **settings: Any
) -> Env:
    """`make_env` with the rows `seed` writes into the empty store; it gives the user and
    token the env signs in with."""
    settings = {
        "facebook_page_id": "1000000000000001",
        "facebook_page_token": SecretStr("unit-page-token"),
        "token_encryption_keys": SecretStr(TOKEN_KEY),
        "api_secret_key": SecretStr(SESSION_KEY),
        **settings,
    }
    store = new_store()
    config = _settings_for(url_of(store), settings)
    app = _app_for(config, store)
    services = FakeServices(config, store, s3_client or FakeS3())
    app.extensions["services"] = services
    services.s3.create_bucket(Bucket=BUCKET)
    user, token = seed(store)
    return Env(app, store, services, user, token)


def _ann(store: Store) -> tuple[UserView, str]:
    return store.create_user("ann@example.com")


#: The unit apps' settings by what they are made from (the process environment included).
_SETTINGS: dict[str, ApiSettings] = {}


def _settings_for(database_url: str, settings: dict[str, Any]) -> ApiSettings:
    """The settings made once: pydantic-settings reads every field's environment variable
    (30 ms a time), and no test changes a settings object. (pytest names the running test in
    the environment: that one variable is no setting.)"""
    given = {"database_url": database_url, **settings}
    environment = sorted(item for item in os.environ.items() if item[0] != "PYTEST_CURRENT_TEST")
    key = repr((_plain(given), environment))
    config = _SETTINGS.get(key)
    if config is None:
        config = _SETTINGS[key] = ApiSettings(
            _env_file=None,  # type: ignore[call-arg]
            s3_endpoint_url=None,
            s3_bucket=BUCKET,
            **given,
        )
    return config


def _plain(values: Any) -> list[tuple[str, Any]]:
    """`values` (name, value) sorted, with the secrets in clear (their repr hides them)."""
    items = values.items() if isinstance(values, dict) else values
    return sorted(
        (name, value.get_secret_value() if isinstance(value, SecretStr) else value)
        for name, value in items
    )


#: The unit apps by their settings. Building one (its routes, its templates) was most of a web
#: test's setup, and the app keeps nothing of a test but what `_app_for` resets: the store,
#: the bucket and the rest are the test's own `FakeServices`.
_APPS: dict[str, Flask] = {}


def _app_for(config: ApiSettings, store: Store) -> Flask:
    key = _settings_key(config)
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(config, store)
        # Apps with other settings render the same templates: compiled once for them all.
        app.jinja_env.bytecode_cache = TEMPLATES
        return app
    # What an earlier test left in the app: its open-stream slots, its rate-limit counts.
    for name in ("web.streams", "web.user_streams"):
        app.extensions.pop(name, None)
    rate_limits.limiter.reset()
    app.extensions["signin_guard"] = rate_limits.SignInGuard(config.signin_rate_limit)
    return app


def _settings_key(config: ApiSettings) -> str:
    """Every setting but the store's URL, secrets included (their dump hides them)."""
    return repr(_plain([(name, value) for name, value in config if name != "database_url"]))


@pytest.fixture()
def aws() -> FakeS3:
    """The test's bucket (the name is older than the fake: it was moto's mock)."""
    return FakeS3()


@pytest.fixture()
def env(aws: Any) -> Env:
    return make_env(aws, api_sse_max_s=1.0)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def sign_in(client: FlaskClient, token: str, next_url: str | None = None) -> Any:
    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    data = {"token": token, "csrf_token": csrf, **({"next": next_url} if next_url else {})}
    return client.post("/login", data=data)


@pytest.fixture()
def client(env: Env) -> FlaskClient:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    return client


def csrf(client: FlaskClient) -> str:
    return csrf_of(client.get("/albums/new").get_data(as_text=True))


# -- signing in ----------------------------------------------------------------------------------


def test_signing_in_with_the_token_sets_a_private_cookie(env: Env) -> None:
    client = env.app.test_client()
    refused = sign_in(client, "not-a-token")
    assert refused.status_code == 401 and "not valid" in refused.get_data(as_text=True)
    response = sign_in(client, env.token)
    assert response.status_code == 303 and response.location == "/albums"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/").location == "/albums"


def test_the_cookie_is_secure_when_configured(aws: Any) -> None:
    env = make_env(aws, api_cookie_secure=True)
    assert "Secure" in sign_in(env.app.test_client(), env.token).headers["Set-Cookie"]


def test_a_configured_secret_key_is_used() -> None:
    configured = ApiSettings(_env_file=None, api_secret_key=SecretStr("s3cret"))  # type: ignore[call-arg]
    assert configured.session_secret() == "s3cret"


def test_a_stranger_goes_to_sign_in_and_comes_back(env: Env) -> None:
    client = env.app.test_client()
    assert client.get("/").location == "/login"
    redirect = client.get("/albums/abc", headers={"Accept": "text/html"})
    assert redirect.status_code == 302 and redirect.location == "/login?next=/albums/abc"
    assert sign_in(client, env.token, "/albums/abc").location == "/albums/abc"


def test_sign_in_never_sends_the_user_to_another_site(env: Env) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client = env.app.test_client()
        assert sign_in(client, env.token, target).location == "/albums"


def test_signing_out_ends_the_session(client: FlaskClient) -> None:
    response = client.post("/logout", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert client.get("/albums", headers={"Accept": "text/html"}).status_code == 302


def test_a_form_without_its_csrf_token_is_refused(client: FlaskClient, env: Env) -> None:
    key = f"{env.user.prefix}a.png"
    env.put(key, png(8, 8))
    response = client.post("/albums/new", data={"title": "x", "images": [key]})
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert env.services.fake_outbox.published == []


def test_the_json_api_still_answers_in_json(env: Env) -> None:
    response = env.app.test_client().get("/api/albums")
    assert response.status_code == 401 and response.is_json


# -- publishing ----------------------------------------------------------------------------------


def test_the_publish_page_shows_only_the_users_photos(client: FlaskClient, env: Env) -> None:
    other, _ = env.store.create_user("bob@example.com")
    env.put(f"{env.user.prefix}trip/mine.png", png(8, 8))
    env.put(f"{other.prefix}trip/theirs.png", png(8, 8))
    page = client.get("/albums/new").get_data(as_text=True)
    assert "trip/mine.png" in page and "theirs.png" not in page
    assert f"/thumbnails/{env.user.prefix}trip/mine.png" in page


def test_publishing_creates_the_album_and_its_messages(client: FlaskClient, env: Env) -> None:
    keys = [f"{env.user.prefix}trip/{n}.png" for n in range(3)]
    for key in keys:
        env.put(key, png(8, 8))
    response = client.post(
        "/albums/new",
        data={
            "title": "Summer",
            "images": keys[:2],
            "notify_email": "",
            "csrf_token": csrf(client),
        },
    )
    assert response.status_code == 303
    album_id = response.location.rsplit("/", 1)[1]
    album = env.store.album(album_id, env.user.id)
    assert album is not None and album.title == "Summer" and album.notify_email is None
    assert [image.key for image in album.images] == keys[:2]
    assert len(env.services.fake_outbox.published) == 2


def _publish_page(client: FlaskClient) -> dict[str, str]:
    """The hidden fields of a freshly rendered publish form."""
    page = client.get("/albums/new").get_data(as_text=True)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key, page
    return {"csrf_token": csrf_of(page), "idempotency_key": key.group(1)}


def test_a_form_sent_twice_publishes_one_album(client: FlaskClient, env: Env) -> None:
    keys = [f"{env.user.prefix}trip/{n}.png" for n in range(2)]
    hidden = _publish_page(client)
    assert _publish_page(client)["idempotency_key"] != hidden["idempotency_key"]
    form = {"title": "Summer", "images": keys, **hidden}
    first = client.post("/albums/new", data=form)
    again = client.post("/albums/new", data=form)  # a double click, or the form sent again
    assert first.status_code == again.status_code == 303
    assert again.location == first.location
    assert len(env.store.albums(env.user.id)) == 1
    assert len(env.services.fake_outbox.published) == 2

    changed = client.post("/albums/new", data={**form, "title": "Winter"})
    assert changed.status_code == 422
    assert "already published another album" in changed.get_data(as_text=True)
    assert len(env.store.albums(env.user.id)) == 1


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"title": "x"}, "Pick at least one photo"),
        ({"title": "", "images": ["users/1/a.png"]}, "Give the album a title"),
        ({"title": "x", "images": ["users/999/a.png"]}, "not under your prefix"),
        ({"title": "x", "images": ["users/1/a.png"], "notify_email": "nope"}, "Invalid album"),
    ],
)
def test_a_bad_album_is_refused_with_a_reason_and_nothing_is_sent(
    client: FlaskClient, env: Env, form: dict[str, Any], reason: str
) -> None:
    response = client.post("/albums/new", data={**form, "csrf_token": csrf(client)})
    assert response.status_code == 422
    assert reason in response.get_data(as_text=True)
    assert env.services.fake_outbox.published == []


# -- the album page ------------------------------------------------------------------------------


def _mixed_album(env: Env) -> str:
    """Five images, one in each state."""
    album_id = env.album("Summer", 5)
    queued, uploading, retrying, uploaded, failed = env.image_ids(album_id)
    env.store.start_attempt(uploading)
    env.store.start_attempt(retrying)
    env.store.record_retrying(
        retrying,
        "Facebook had a temporary service error (code 2)",
        2,
        datetime(2030, 1, 2, 14, 3, 5),
    )
    env.store.start_attempt(uploaded)
    env.store.record_uploaded(uploaded, "777")
    env.store.start_attempt(failed)
    env.store.record_failed(failed, REFUSED, 324)
    return album_id


def test_the_album_page_says_each_images_state_in_words(client: FlaskClient, env: Env) -> None:
    page = client.get(f"/albums/{_mixed_album(env)}").get_data(as_text=True)
    for words in (
        "Queued",
        "Waiting to upload",
        "Uploading",
        "Sending to Facebook",
        "Retrying",
        "Facebook had a temporary service error",
        "Next try at",
        'datetime="2030-01-02T14:03:05Z"',
        "2030-01-02 14:03:05 UTC",
        "Uploaded",
        "https://www.facebook.com/photo.php?fbid=777",
        "Failed",
        "Facebook refused the image: rejected image",
        "(code 324)",
        "1 of 5 photos on Facebook, 1 failed, 3 to go",
        "Retry failed images",
        'aria-valuenow="1"',
    ):
        assert words in page, words
    assert 'data-role="retry" hidden' not in page


def test_the_retry_button_is_hidden_without_failures(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Fine", 1)
    page = client.get(f"/albums/{album_id}").get_data(as_text=True)
    assert 'data-role="retry" hidden' in page


def test_user_text_is_escaped(client: FlaskClient, env: Env) -> None:
    album_id = env.album("<script>alert(1)</script>", 1)
    page = client.get(f"/albums/{album_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    listing = client.get("/albums").get_data(as_text=True)
    assert "<script>alert(1)" not in listing


def test_another_users_album_is_not_found(client: FlaskClient, env: Env) -> None:
    other, _ = env.store.create_user("bob@example.com")
    album_id = env.album("Theirs", 1, user=other)
    response = client.get(f"/albums/{album_id}")
    assert response.status_code == 404 and "no such album" in response.get_data(as_text=True)
    assert client.get(f"/albums/{album_id}/events").status_code == 404
    assert (
        client.post(f"/albums/{album_id}/retry", data={"csrf_token": csrf(client)}).status_code
        == 404
    )


def test_the_album_list_shows_each_outcome(client: FlaskClient, env: Env) -> None:
    done = env.album("All good", 1)
    (image,) = env.image_ids(done)
    env.store.record_uploaded(image, "1")
    mixed = env.album("Some bad", 2)
    first, second = env.image_ids(mixed)
    env.store.record_uploaded(first, "2")
    env.store.record_failed(second, REFUSED, 324)
    page = client.get("/albums").get_data(as_text=True)
    assert "The photo is on Facebook" in page and "Done with failures" in page
    assert "1 of 2 photos on Facebook, 1 could not be published" in page
    assert page.index("Some bad") < page.index("All good")  # newest first


def test_pages_forbid_framing_and_foreign_scripts(client: FlaskClient) -> None:
    response = client.get("/albums")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store"


# -- the live stream -----------------------------------------------------------------------------


def events_of(body: str) -> list[tuple[str, Any]]:
    found = []
    for block in body.split("\n\n"):
        lines = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_the_stream_sends_the_album_and_ends_once_it_settled(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Done", 1)
    (image,) = env.image_ids(album_id)
    env.store.record_uploaded(image, "9")
    response = client.get(f"/albums/{album_id}/events")
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    assert body.startswith("retry: ")
    ((kind, album),) = events_of(body)
    assert kind == "album" and album["state"] == "done" and album["settled"]
    assert album["images"][0]["fb_url"] == "https://www.facebook.com/photo.php?fbid=9"


def test_the_stream_sends_changes_and_ends_after_its_time(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Busy", 2)
    first, _ = env.image_ids(album_id)
    env.clock.at(0.3, lambda: env.store.start_attempt(first))
    events = events_of(client.get(f"/albums/{album_id}/events").get_data(as_text=True))
    # The whole album, then the one image that changed (tests/unit/test_album_pages.py).
    states = [album["images"][0]["state"] for _, album in events]
    assert states == ["queued", "uploading"]  # then API_SSE_MAX_S (1 s) ended it
    assert 1.0 < env.clock.now <= 1.0 + album_events.POLL_S


def test_streams_past_the_limit_get_a_snapshot_and_reconnect(aws: Any) -> None:
    # The user's own share (API_SSE_STREAMS_PER_USER, tests/unit/test_limits.py) set above
    # the process's: this is the process's limit.
    env = make_env(aws, api_sse_streams=1, api_sse_streams_per_user=2, api_sse_max_s=5.0)
    client = env.app.test_client()
    sign_in(client, env.token)
    album_id = env.album("Busy", 1)
    held = client.get(f"/albums/{album_id}/events", buffered=False)
    chunks = iter(held.response)
    next(chunks)  # the first stream is open and holds the only slot
    second = events_of(client.get(f"/albums/{album_id}/events").get_data(as_text=True))
    assert [album["state"] for _, album in second] == ["publishing"]
    held.close()


# -- retry ---------------------------------------------------------------------------------------


def test_retry_reopens_the_failed_images(client: FlaskClient, env: Env) -> None:
    album_id = _mixed_album(env)
    token = csrf(client)
    response = client.post(
        f"/albums/{album_id}/retry",
        data={"csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 202 and response.json == {
        "reopened": 1,
        "message": "Trying 1 photo again.",
    }
    album = env.store.album(album_id)
    assert album is not None and all(image.state != "failed" for image in album.images)
    again = client.post(f"/albums/{album_id}/retry", data={"csrf_token": token})
    assert again.status_code == 303
    assert "no failed photos" in client.get(again.location).get_data(as_text=True)


# -- thumbnails ----------------------------------------------------------------------------------


def test_a_thumbnail_is_a_small_cached_jpeg(client: FlaskClient, env: Env) -> None:
    key = f"{env.user.prefix}big/photo.jpg"
    original = io.BytesIO()
    Image.new("RGB", (1600, 1200), "teal").save(original, "JPEG")
    env.put(key, original.getvalue())
    response = client.get(f"/thumbnails/{key}")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.size == (480, 360)
    assert response.headers["Cache-Control"] == "private, max-age=3600"
    again = client.get(f"/thumbnails/{key}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_thumbnails_only_for_the_users_own_objects(client: FlaskClient, env: Env) -> None:
    other, _ = env.store.create_user("bob@example.com")
    theirs = f"{other.prefix}a.png"
    env.put(theirs, png(8, 8))
    assert client.get(f"/thumbnails/{theirs}").status_code == 404
    assert client.get(f"/thumbnails/{env.user.prefix}../{other.prefix}a.png").status_code == 404
    missing = client.get(f"/thumbnails/{env.user.prefix}missing.png")
    assert missing.status_code == 404 and missing.mimetype == "image/svg+xml"
    assert b"not in your storage" in missing.data  # what the page's <img> shows
    assert env.app.test_client().get(f"/thumbnails/{theirs}").status_code in (302, 401)


def test_a_file_that_is_no_image_gets_a_placeholder(client: FlaskClient, env: Env) -> None:
    key = f"{env.user.prefix}notes.txt"
    env.put(key, b"not an image")
    response = client.get(f"/thumbnails/{key}")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"


# -- words ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (REFUSED, ("Facebook refused the image: rejected image", "code 324")),
        (
            "Facebook is temporarily unavailable (HTTP 503)",
            ("Facebook is temporarily unavailable", "HTTP 503"),
        ),
        ("not found in the bucket", ("The file is not in your storage", None)),
        ("internal error: KeyError: 'x'", ("Something went wrong on our side", None)),
        (None, ("", None)),
    ],
)
def test_reasons_are_plain_words(error: str | None, expected: tuple[str, str | None]) -> None:
    assert plain_reason(error) == expected


def test_a_paused_photo_says_what_it_waits_for(client: FlaskClient, env: Env) -> None:
    """The page names the state and the reason (its Page to be reconnected), as a retrying or
    failed photo's; the live stream sends the same words."""
    album_id = env.album("Paused", 1)
    (image,) = env.image_ids(album_id)
    env.store.pause_image(image, "waiting for you to reconnect your Facebook Page", 190, False)
    page = client.get(f"/albums/{album_id}").get_data(as_text=True)
    assert ">Paused<" in page and "Waiting for you to reconnect your Facebook Page" in page
    (_, album), *_ = events_of(client.get(f"/albums/{album_id}/events").get_data(as_text=True))
    assert album["images"][0]["label"] == "Paused"


def test_next_attempt_times_are_utc_in_the_json(client: FlaskClient, env: Env) -> None:
    album_id = env.album("Later", 1)
    (image,) = env.image_ids(album_id)
    when = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=30)
    env.store.start_attempt(image)
    env.store.record_retrying(image, "Facebook had a temporary service error (code 2)", 2, when)
    (_, album), *_ = events_of(client.get(f"/albums/{album_id}/events").get_data(as_text=True))
    assert album["images"][0]["next_attempt_at"] == when.isoformat() + "Z"


def test_a_signed_in_post_reads_its_user_once(
    client: FlaskClient, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSRF check and the view's guard both ask who is signed in: one store read."""
    album_id = env.album("Fine", 1)
    token = csrf(client)
    reads: list[int] = []
    user_of = env.store.user

    def counted(user_id: int) -> Any:
        reads.append(user_id)
        return user_of(user_id)

    monkeypatch.setattr(env.store, "user", counted)
    response = client.post(f"/albums/{album_id}/retry", data={"csrf_token": token})
    assert response.status_code in (303, 409), response.status_code
    assert len(reads) == 1, reads


def test_the_banner_of_a_blocked_page_does_not_say_none_lost(client: FlaskClient, env: Env) -> None:
    env.store.connect_page(env.user.id, "111", "Page 111", env.services.cipher.encrypt("t"))
    env.store.set_page_state(env.user.id, "111", "blocked")
    page = client.get("/albums").get_data(as_text=True)
    assert "The album it blocked stopped" in page and "none lost" not in page
    env.store.set_page_state(env.user.id, "111", "needs_reconnect")
    assert "none lost" in client.get("/albums").get_data(as_text=True)


def test_a_paused_post_says_why_once() -> None:
    from services.api.album_model import where_text

    post = {"state": "paused", "error": "waiting: Facebook blocked your Page for policy reasons"}
    text = where_text({"kind": "post", "post": post})
    assert text == "One post on your Page, paused: Facebook blocked your Page for policy reasons."
