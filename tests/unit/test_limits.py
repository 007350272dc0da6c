"""Issue 11: rate limits per IP (sign-in) and per user (publish, retry, connect, live streams),
the images-per-day quota counted from the store, and notify_email only to the user's own
address. In-process apps on the memory storage (the Redis storage: tests/integration)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from shared.store.tables import Album, OutboxMessage

from .test_web import Env, csrf, csrf_of, make_env, sign_in

OTHER_IP = {"REMOTE_ADDR": "198.51.100.7"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def publish(
    env: Env, count: int = 1, token: str | None = None, first: int = 0, **extra: Any
) -> Any:
    user = env.user if token is None else env.store.user_by_token(token)
    assert user is not None
    keys = [f"{user.prefix}p/{n}.png" for n in range(first, first + count)]
    return env.app.test_client().post(
        "/api/albums",
        headers=bearer(token or env.token),
        json={"title": "t", "images": keys, **extra},
    )


def assert_refused(response: Any, *words: str) -> str:
    """A 429 with a whole-seconds Retry-After and the reason; returns the reason."""
    assert response.status_code == 429, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    reason = response.get_json()["error"] if response.is_json else response.get_data(as_text=True)
    for word in words:
        assert word in reason, reason
    return str(reason)


def rows(env: Env, model: Any) -> int:
    with env.store._read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# -- sign-in: per IP -----------------------------------------------------------------------------


def test_failed_token_checks_are_limited_per_ip() -> None:
    env = make_env(signin_rate_limit="3 per minute")
    client = env.app.test_client()
    for _ in range(3):
        assert client.get("/api/albums", headers=bearer("guess")).status_code == 401
    # Past the limit even the right token is refused from that address: a guesser cannot
    # tell a hit from a miss.
    assert_refused(client.get("/api/albums", headers=bearer(env.token)), "sign-in")
    assert (
        client.get("/api/albums", headers=bearer(env.token), environ_base=OTHER_IP).status_code
        == 200
    )


def test_valid_tokens_spend_nothing() -> None:
    env = make_env(signin_rate_limit="2 per minute")
    client = env.app.test_client()
    for _ in range(5):
        assert client.get("/api/albums", headers=bearer(env.token)).status_code == 200


def test_the_sign_in_form_is_limited_per_ip_with_a_readable_page() -> None:
    env = make_env(signin_rate_limit="2 per minute")
    client = env.app.test_client()
    for _ in range(2):
        assert sign_in(client, "guess").status_code == 401
    refused = sign_in(client, env.token)
    reason = assert_refused(refused, "Too many sign-in attempts")
    assert "<html" in reason.lower() and refused.mimetype == "text/html"
    other = env.app.test_client()
    csrf_token = csrf_of(other.get("/login", environ_base=OTHER_IP).get_data(as_text=True))
    assert (
        other.post(
            "/login", data={"token": env.token, "csrf_token": csrf_token}, environ_base=OTHER_IP
        ).status_code
        == 303
    )


# -- per user: publish, retry, connect -----------------------------------------------------------


def test_publishing_is_limited_per_user() -> None:
    env = make_env(publish_rate_limit="2 per minute")
    for n in range(2):
        assert publish(env, first=n).status_code == 202
    assert_refused(publish(env, first=5), "publish", "2 per 1 minute")
    bob, bob_token = env.store.create_user("bob@example.com")
    assert publish(env, token=bob_token).status_code == 202


def test_the_publish_page_shares_the_users_limit_and_shows_a_page() -> None:
    env = make_env(publish_rate_limit="1 per minute")
    assert publish(env).status_code == 202
    client = env.app.test_client()
    sign_in(client, env.token)
    response = client.post(
        "/albums/new",
        data={"title": "Web", "images": [f"{env.user.prefix}p/9.png"], "csrf_token": csrf(client)},
    )
    reason = assert_refused(response, "publish")
    assert response.mimetype == "text/html" and "<html" in reason.lower()


def test_retry_is_limited_per_user() -> None:
    env = make_env(retry_rate_limit="1 per minute")
    album_id = publish(env).get_json()["id"]
    client = env.app.test_client()
    url = f"/api/albums/{album_id}/retry"
    assert client.post(url, headers=bearer(env.token)).status_code == 409  # nothing failed
    assert_refused(client.post(url, headers=bearer(env.token)), "retr")


def test_connecting_a_page_is_limited_per_user() -> None:
    env = make_env(connect_rate_limit="2 per minute")
    client = env.app.test_client()
    sign_in(client, env.token)
    for _ in range(2):
        assert client.get("/connect/facebook").status_code == 302
    response = client.get("/connect/facebook")
    assert_refused(response, "connect")
    assert response.mimetype == "text/html"


# -- live streams: concurrent per user -----------------------------------------------------------


def open_stream(client: FlaskClient, album_id: str) -> Any:
    response = client.get(f"/albums/{album_id}/events", buffered=False)
    if response.status_code == 200:
        next(iter(response.response))  # the stream started: it holds its slot
    return response


def test_one_user_cannot_take_every_live_stream() -> None:
    env = make_env(api_sse_streams=4, api_sse_streams_per_user=2)
    album_id = env.album("Live", 2)
    client = env.app.test_client()
    sign_in(client, env.token)
    bob, bob_token = env.store.create_user("bob@example.com")
    bobs = env.album("Bob's", 1, user=bob)
    other = env.app.test_client()
    sign_in(other, bob_token)
    # Open streams share this thread's request contexts: each is closed in reverse order.
    first = open_stream(client, album_id)
    second = open_stream(client, album_id)
    assert (first.status_code, second.status_code) == (200, 200)
    assert_refused(open_stream(client, album_id), "live")
    bobs_stream = open_stream(other, bobs)  # another user still gets one of their own
    assert bobs_stream.status_code == 200
    bobs_stream.close()
    second.close()  # a closed stream gives its slot back
    again = open_stream(client, album_id)
    assert again.status_code == 200
    again.close()
    first.close()


# -- images per day ------------------------------------------------------------------------------


def test_the_daily_image_quota_refuses_the_whole_album() -> None:
    env = make_env(images_per_day=5)
    assert publish(env, 3).status_code == 202
    albums, outbox = rows(env, Album), rows(env, OutboxMessage)
    response = publish(env, 3, first=10)
    reason = assert_refused(response, "5 images a day", "resets")
    assert "3 of them" in reason
    assert rows(env, Album) == albums and rows(env, OutboxMessage) == outbox
    assert publish(env, 2, first=20).status_code == 202  # exactly up to the quota


def test_the_quota_counts_only_the_last_24_hours() -> None:
    env = make_env(images_per_day=3)
    old = publish(env, 3).get_json()["id"]
    assert publish(env, 1, first=5).status_code == 429
    with env.store._tx() as s:
        album = s.get(Album, old)
        assert album is not None
        s.execute(
            update(Album)
            .where(Album.id == old)
            .values(created_at=album.created_at - timedelta(hours=24, seconds=1))
        )
    assert publish(env, 3, first=5).status_code == 202


def test_an_idempotent_repeat_is_answered_even_at_the_quota() -> None:
    env = make_env(images_per_day=2)
    keys = [f"{env.user.prefix}p/{n}.png" for n in range(2)]
    client = env.app.test_client()
    headers = {**bearer(env.token), "Idempotency-Key": "k-1"}
    first = client.post("/api/albums", headers=headers, json={"title": "t", "images": keys})
    again = client.post("/api/albums", headers=headers, json={"title": "t", "images": keys})
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"


def test_an_album_larger_than_the_quota_is_unprocessable() -> None:
    env = make_env(images_per_day=2)
    response = publish(env, 3)
    assert response.status_code == 422 and "2 images a day" in response.get_json()["error"]


# -- notify_email --------------------------------------------------------------------------------


def test_notify_email_only_to_the_users_own_address() -> None:
    env = make_env()
    response = publish(env, notify_email="stranger@example.com")
    assert response.status_code == 422
    assert "your own address" in response.get_json()["error"]
    assert rows(env, Album) == 0
    assert publish(env, notify_email="Ann@Example.com").status_code == 202
