"""The rate limits in Redis (RATE_LIMIT_STORAGE_URL): what one API process counted, another
process refuses; another key prefix counts apart. Each run uses a key prefix of its own on the
shared Redis and deletes its keys afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.api.app import create_app
from services.api.services import Services
from services.api.settings import ApiSettings
from shared.store import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: Another API process: GET /api/albums with the token, then POST .../retry twice; prints the
#: statuses and the refusal's Retry-After.
OTHER_PROCESS = """
import json, os
from services.api.app import create_app
client = create_app().test_client()
auth = {"Authorization": "Bearer " + os.environ["TOKEN"]}
got = client.get("/api/albums", headers=auth)
retries = [client.post("/api/albums/none/retry", headers=auth) for _ in range(2)]
print(json.dumps({"get": got.status_code, "retries": [r.status_code for r in retries],
                  "retry_after": got.headers.get("Retry-After")}))
"""


@pytest.fixture()
def prefix() -> Iterator[str]:
    import redis

    host, port = "127.0.0.1", 6379
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, port)) != 0:
            pytest.skip("no Redis answers on 127.0.0.1:6379")
    prefix = f"albums-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    assert not list(client.scan_iter(f"{prefix}*"))
    client.close()


def settings_env(tmp_path: Path, prefix: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path}/albums.db",
        "S3_ENDPOINT_URL": "",
        "RATE_LIMIT_STORAGE_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": prefix,
        "SIGNIN_RATE_LIMIT": "2 per minute",
        "RETRY_RATE_LIMIT": "1 per minute",
        "FACEBOOK_PAGE_ID": "1000000000000001",
        "FACEBOOK_PAGE_TOKEN": "t",
    }


def other_process(env: dict[str, str], token: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS],
        cwd=ROOT,
        check=True,
        env={**os.environ, **env, "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_processes_share_the_limits_through_redis(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = settings_env(tmp_path, prefix)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = Store(env["DATABASE_URL"])
    app = create_app(ApiSettings(_env_file=None), store)  # type: ignore[call-arg]
    user, token = store.create_user("ann@example.com")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        # This process spends the user's one retry: another process refuses its retries.
        assert client.post("/api/albums/none/retry", headers=auth).status_code == 404
        assert other_process(env, token) == {"get": 200, "retries": [429, 429], "retry_after": None}
        # This process spends the address's sign-in allowance: another refuses the token.
        for _ in range(2):
            assert (
                client.get("/api/albums", headers={"Authorization": "Bearer guess"}).status_code
                == 401
            )
        seen = other_process(env, token)
        assert seen["get"] == 429 and int(seen["retry_after"]) >= 1
        # A process counting under another prefix starts afresh.
        fresh = other_process({**env, "RATE_LIMIT_KEY_PREFIX": f"{prefix}-other"}, token)
        assert fresh == {"get": 200, "retries": [404, 429], "retry_after": None}
    finally:
        services: Services = app.extensions["services"]
        services.close()
        store.dispose()
