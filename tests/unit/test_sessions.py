"""Issue 11, an attacker's findings against the sign-in: forged and unrevocable session
cookies, an open redirect after sign-in, a cookie sent over http, and answers without the
headers that keep them out of caches and frames. Each test is written the way the attack was
made (the forged cookie is signed with itsdangerous and Flask's own serializer)."""

from __future__ import annotations

import hashlib
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask.json.tag import TaggedJSONSerializer
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr, ValidationError

from services.api.settings import ApiSettings
from services.uploader.settings import UploaderSettings
from tests.present import present

from .test_web import TOKEN_KEY, Env, csrf, csrf_of, make_env, sign_in

HTML = {"Accept": "text/html"}


def flask_cookie_serializer(secret: str) -> URLSafeTimedSerializer:
    """What Flask signs its session cookie with (flask.sessions.SecureCookieSessionInterface)."""
    return URLSafeTimedSerializer(
        secret,
        salt="cookie-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )


def cookie_of(client: FlaskClient) -> tuple[str, str]:
    """The name and value of the one session cookie the client holds."""
    cookies = [(c.key, c.value) for c in present(client._cookies).values()]  # noqa: SLF001
    assert len(cookies) == 1, cookies
    return cookies[0]


@pytest.fixture()
def env() -> Env:
    return make_env()


@pytest.fixture()
def unset_key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """The default install: API_SECRET_KEY unset (var/ is the test's own directory)."""
    monkeypatch.chdir(tmp_path)
    return make_env(api_secret_key=None)


# -- forged cookies ------------------------------------------------------------------------------


def test_a_cookie_forged_with_the_key_derived_from_database_url_is_refused(
    unset_key_env: Env,
) -> None:
    env = unset_key_env
    bob, _ = env.store.create_user("bob@example.com")
    bobs_album = env.album("Bob's private trip", 1, user=bob)
    # The attacker signs in as themselves and reads their own cookie (only signed, not sealed).
    own = env.app.test_client()
    assert sign_in(own, env.token).status_code == 303
    name, value = cookie_of(own)
    derived = hashlib.sha256(
        f"album-publisher local session key:{env.services.settings.database_url}".encode()
    ).hexdigest()
    serializer = flask_cookie_serializer(derived)
    _, payload = serializer.loads_unsafe(value)
    assert isinstance(payload, dict) and payload.get("user_id") == env.user.id
    # ... and signs the same session for the next user id, with the public key.
    forged_payload = {**payload, "user_id": bob.id, "csrf": "attacker"}
    forged = serializer.dumps(forged_payload)
    attacker = env.app.test_client()
    attacker.set_cookie(name, forged)
    page = attacker.get("/albums", headers=HTML)
    assert page.status_code == 302 and "Bob's private trip" not in page.get_data(as_text=True)
    assert attacker.get(f"/albums/{bobs_album}", headers=HTML).status_code == 302
    key = f"{bob.prefix}trip/photo-0.png"
    env.put(key, b"\x89PNG")
    published = attacker.post(
        "/albums/new", data={"title": "as Bob", "images": [key], "csrf_token": "attacker"}
    )
    assert published.status_code in (400, 401)
    assert env.services.fake_outbox.published == []
    assert [album.title for album in env.store.albums(bob.id)] == ["Bob's private trip"]


def test_the_local_session_key_is_random_kept_under_var_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = ApiSettings(_env_file=None, database_url="sqlite:///x.db")  # type: ignore[call-arg]
    first = settings.session_secret()
    assert first != hashlib.sha256(b"album-publisher local session key:sqlite:///x.db").hexdigest()
    assert len(first) >= 40
    files = list((tmp_path / "var").iterdir())
    assert [f.name for f in files] == ["session-secret.key"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    # Every worker (another settings object, another process) reads the same key.
    again = ApiSettings(_env_file=None, database_url="sqlite:///y.db")  # type: ignore[call-arg]
    assert again.session_secret() == first


def test_workers_starting_together_agree_on_one_local_secret(tmp_path: Path) -> None:
    from shared.config.local_secrets import local_secret

    path = tmp_path / "var" / "shared.key"
    seen: list[str] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        seen.append(local_secret(path, lambda: f"key-made-by-{n}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["shared.key"]  # no draft left behind


# -- production refuses to start without its secrets ---------------------------------------------

PRODUCTION = {
    "app_env": "production",
    "api_secret_key": SecretStr("k" * 48),
    "token_encryption_keys": SecretStr(TOKEN_KEY),
    "facebook_app_secret": SecretStr("the-real-app-secret"),
}


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"api_secret_key": None}, "API_SECRET_KEY"),
        ({"api_secret_key": SecretStr("")}, "API_SECRET_KEY"),
        ({"token_encryption_keys": SecretStr("")}, "TOKEN_ENCRYPTION_KEYS"),
        ({"facebook_app_secret": SecretStr("sim-app-secret")}, "FACEBOOK_APP_SECRET"),
    ],
)
def test_production_refuses_to_start_without_its_secrets(
    missing: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ApiSettings(_env_file=None, **{**PRODUCTION, **missing})  # type: ignore[call-arg]
    assert named in str(refused.value) and "APP_ENV=production" in str(refused.value)
    with pytest.raises(ValidationError, match="TOKEN_ENCRYPTION_KEYS"):
        UploaderSettings(_env_file=None, app_env="production")  # type: ignore[call-arg]


def test_production_starts_with_its_secrets_and_local_needs_none() -> None:
    settings = ApiSettings(_env_file=None, **PRODUCTION)  # type: ignore[call-arg, arg-type]
    assert settings.session_secret() == "k" * 48
    assert ApiSettings(_env_file=None).app_env == "local"  # type: ignore[call-arg]


# -- revocation and lifetime ---------------------------------------------------------------------


def replay(env: Env, cookie: tuple[str, str]) -> int:
    """The status a browser holding this (copied) cookie gets for the albums page."""
    thief = env.app.test_client()
    thief.set_cookie(*cookie)
    return thief.get("/albums", headers=HTML).status_code


def test_a_cookie_copied_before_sign_out_no_longer_works(env: Env) -> None:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    copied = cookie_of(client)
    assert replay(env, copied) == 200
    assert client.post("/logout", data={"csrf_token": csrf(client)}).status_code == 303
    assert replay(env, copied) == 302


def test_a_new_token_ends_the_sessions_signed_in_with_the_old(env: Env, capsys: Any) -> None:
    from services.api.__main__ import rotate_token

    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    assert client.get("/albums", headers=HTML).status_code == 200
    rotate_token(env.services.settings, env.user.email)
    assert client.get("/albums", headers=HTML).status_code == 302
    assert '"token"' in capsys.readouterr().out
    other = env.app.test_client()
    assert sign_in(other, env.token).status_code == 401  # the old token is gone too


def test_create_user_again_is_a_rotation_too(env: Env) -> None:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    env.store.create_user(env.user.email)
    assert client.get("/albums", headers=HTML).status_code == 302


def test_rotating_an_unknown_user_says_so(env: Env) -> None:
    from services.api.__main__ import rotate_token

    with pytest.raises(SystemExit, match="no user nobody@example.com"):
        rotate_token(env.services.settings, "nobody@example.com")


def test_a_session_ends_after_its_days_however_often_it_is_used(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    days = env.services.settings.api_session_days
    for _ in range(days - 1):  # used every day: a sliding cookie would live for ever
        now[0] += 86400
        assert client.get("/albums", headers=HTML).status_code == 200
    now[0] += 86400 + 1
    assert client.get("/albums", headers=HTML).status_code == 302


# -- redirects after sign-in ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/%09/evil.example",
        "/\n/evil.example",
        "/ok\r\nSet-Cookie: x=y",
        "/\x00/evil.example",
        " //evil.example",
        "/\\/evil.example",
        "https:/evil.example",
        "///evil.example",
        "/albums\r\nLocation: https://evil.example",
    ],
)
def test_sign_in_sends_only_to_paths_of_this_site(env: Env, target: str) -> None:
    response = sign_in(env.app.test_client(), env.token, target)
    assert response.status_code == 303, response.status
    assert response.location == "/albums"


def test_a_path_of_this_site_with_its_query_is_kept(env: Env) -> None:
    response = sign_in(env.app.test_client(), env.token, "/albums/abc?x=1")
    assert response.location == "/albums/abc?x=1"


# -- the cookie over https -----------------------------------------------------------------------


def set_cookie_of(response: Any) -> str:
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1, cookies
    return str(cookies[0])


def test_over_https_the_cookie_is_secure_host_only_and_hsts_is_sent(env: Env) -> None:
    client = env.app.test_client()
    login = client.get("/login", base_url="https://albums.example")
    assert login.headers["Strict-Transport-Security"].startswith("max-age=")
    response = client.post(
        "/login",
        base_url="https://albums.example",
        data={"token": env.token, "csrf_token": csrf_of_login(login)},
    )
    cookie = set_cookie_of(response)
    assert cookie.startswith("__Host-albums_session=")
    assert "; Secure" in cookie and "; Path=/" in cookie and "Domain" not in cookie
    page = client.get("/albums", base_url="https://albums.example", headers=HTML)
    assert page.status_code == 200


def test_in_production_the_cookie_is_secure_even_behind_a_plain_http_proxy() -> None:
    env = make_env(**PRODUCTION)
    response = sign_in(env.app.test_client(), env.token)
    cookie = set_cookie_of(response)
    assert cookie.startswith("__Host-albums_session=") and "; Secure" in cookie
    assert "Strict-Transport-Security" in response.headers


def test_local_http_keeps_a_plain_cookie_and_no_hsts(env: Env) -> None:
    response = sign_in(env.app.test_client(), env.token)
    cookie = set_cookie_of(response)
    assert cookie.startswith("albums_session=") and "Secure" not in cookie
    assert "Strict-Transport-Security" not in response.headers


def csrf_of_login(response: Any) -> str:
    return csrf_of(response.get_data(as_text=True))


# -- headers on every answer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/albums",
        "/api/page",
        "/api/images",
        "/healthz",
        "/api/openapi.json",
        "/api/albums/nope",
    ],
)
def test_every_api_answer_is_private_and_not_sniffed(env: Env, path: str) -> None:
    response = env.app.test_client().get(path, headers={"Authorization": f"Bearer {env.token}"})
    assert response.headers.get("Cache-Control") == "no-store", (path, response.headers)
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", "")


def test_a_401_on_the_json_api_says_how_to_authenticate(env: Env) -> None:
    client = env.app.test_client()
    missing = client.get("/api/albums")
    assert missing.status_code == 401
    assert missing.headers.get("WWW-Authenticate", "").startswith("Bearer realm=")
    wrong = client.post("/api/albums", headers={"Authorization": "Bearer wrong"}, json={})
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers.get("WWW-Authenticate", "")
    assert wrong.headers.get("Cache-Control") == "no-store"


def test_pages_with_private_data_are_not_stored_either(env: Env) -> None:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    for path in ("/albums", "/albums/new", "/login"):
        response = client.get(path, headers=HTML)
        assert response.headers.get("Cache-Control") == "no-store", path
        assert response.headers.get("X-Frame-Options") == "DENY", path
