"""/healthz and /readyz of each service on the real broker (a vhost of its own) and PostgreSQL,
each reached through a proxy the test cuts: /readyz answers 503 naming the dependency that is
away and 200 again once it is back; /healthz (liveness) answers 200 throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from pydantic import SecretStr

from chaos.proxy import Proxy
from dev.ports import free_port
from dev.waiting import wait_for
from services.api.app import create_app
from services.api.services import Services
from services.api.settings import ApiSettings
from shared.store import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = (
        parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc.rsplit("@", 1)[-1] else parts.netloc
    )
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


@pytest.fixture()
def proxies(amqp_url: str, postgres_url: str) -> Iterator[dict[str, Proxy]]:
    made = {
        "broker": Proxy(urlsplit(amqp_url).port or 5672, "broker"),
        "store": Proxy(urlsplit(postgres_url).port or 5432, "store"),
    }
    for proxy in made.values():
        proxy.start()
    yield made
    for proxy in made.values():
        proxy.cut()


def _not_ready(get: Any) -> tuple[int, dict[str, Any]] | None:
    answer = _readyz(get)
    return answer if answer and answer[0] == 503 else None


def _readyz(get: Any) -> tuple[int, dict[str, Any]] | None:
    try:
        status, body = get("/readyz")
    except requests.RequestException:
        return None
    return status, body


def _check_each_dependency(get: Any, proxies: dict[str, Proxy]) -> None:
    """Ready with both up; 503 naming each one while it is away; /healthz 200 all along."""
    wait_for(
        lambda: (
            _readyz(get) == (200, {"status": "ready", "checks": {"store": "ok", "broker": "ok"}})
        ),
        timeout=60,
        what="ready with both up",
    )
    for name, proxy in proxies.items():
        proxy.cut()
        try:
            answer = wait_for(
                lambda: _not_ready(get), timeout=60, what=f"not ready with the {name} away"
            )
            status, body = answer
            assert body["status"] == "not ready"
            assert body["checks"][name] != "ok"
            assert body["checks"][({"store", "broker"} - {name}).pop()] == "ok"
            assert get("/healthz")[0] == 200
        finally:
            proxy.restore()
        wait_for(
            lambda: _readyz(get) is not None and _readyz(get)[0] == 200,  # type: ignore[index]
            timeout=60,
            what=f"ready again with the {name} back",
        )


def test_the_api_readyz_checks_the_store_and_the_broker(
    proxies: dict[str, Proxy], amqp_url: str, postgres_url: str
) -> None:
    settings = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        amqp_url=_via(amqp_url, proxies["broker"].port),
        database_url="sqlite:///unused.db",
        s3_endpoint_url=None,
        api_secret_key=SecretStr("integration-session-key"),
    )
    store = Store(_via(postgres_url, proxies["store"].port))
    app = create_app(settings, store)
    client = app.test_client()

    def get(path: str) -> tuple[int, Any]:
        response = client.get(path)
        return response.status_code, response.get_json()

    try:
        _check_each_dependency(get, proxies)
    finally:
        services: Services = app.extensions["services"]
        services.close()
        store.dispose()


@contextmanager
def _service(module: str, port_setting: str, env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    port = free_port()
    log = (tmp_path / f"{module}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), port_setting: str(port), **env},
    )

    def get(path: str) -> tuple[int, Any]:
        response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        return response.status_code, response.json()

    try:
        yield get
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _env(amqp_url: str, postgres_url: str, proxies: dict[str, Proxy]) -> dict[str, str]:
    return {
        "AMQP_URL": _via(amqp_url, proxies["broker"].port),
        "DATABASE_URL": _via(postgres_url, proxies["store"].port),
        "RETRY_DELAYS": "1",
        "LOG_LEVEL": "WARNING",
    }


@pytest.mark.slow
def test_the_uploader_serves_healthz_and_readyz(
    proxies: dict[str, Proxy], amqp_url: str, postgres_url: str, tmp_path: Path
) -> None:
    with _service(
        "services.uploader", "UPLOADER_HEALTH_PORT", _env(amqp_url, postgres_url, proxies), tmp_path
    ) as get:
        _check_each_dependency(get, proxies)


@pytest.mark.slow
def test_the_notifier_serves_healthz_and_readyz(
    proxies: dict[str, Proxy], amqp_url: str, postgres_url: str, tmp_path: Path
) -> None:
    # The notifier declares nothing: its queue is the uploader's to declare.
    from shared.broker.connection import declare_topology
    from shared.config.settings import CommonSettings

    declare_topology(
        CommonSettings(
            _env_file=None,
            amqp_url=amqp_url,  # type: ignore[call-arg]
            retry_delays=(1,),
        ),
        policies=False,
    )
    with _service(
        "services.notifier",
        "NOTIFIER_HEALTH_PORT",
        {
            **_env(amqp_url, postgres_url, proxies),
            "SMTP_PORT": str(free_port()),
            "NOTIFY_ID": uuid.uuid4().hex,
        },
        tmp_path,
    ) as get:
        _check_each_dependency(get, proxies)


def test_a_taken_health_port_is_logged_and_the_service_runs_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.observability import health_server

    first = health_server.serve("127.0.0.1", 0, {})
    assert first is not None
    try:
        taken = first.server_address[1]
        assert health_server.serve("127.0.0.1", taken, {}) is None
        assert f"health NOT served on 127.0.0.1:{taken}" in caplog.text
    finally:
        first.shutdown()
        first.server_close()


@pytest.fixture(scope="module")
def health_port() -> Iterator[int]:
    """A consumer's health server on a port of its own, with one check that passes: one for
    the module's cases (its shutdown waits out a 0.5 s poll)."""
    from shared.observability import health_server

    server = health_server.serve("127.0.0.1", 0, {"store": lambda: None})
    assert server is not None
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/nowhere"])
def test_the_health_port_answers_head_as_get_without_a_body(health_port: int, path: str) -> None:
    url = f"http://127.0.0.1:{health_port}{path}"
    get = requests.get(url, timeout=5)
    head = requests.head(url, timeout=5)
    assert (head.status_code, head.content) == (get.status_code, b"")
    assert head.headers["Content-Length"] == str(len(get.content))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
def test_the_health_port_answers_other_methods_405_with_allow(
    health_port: int, method: str
) -> None:
    # A body too: the answer must come whole, not a reset for the unread bytes.
    answer = requests.request(
        method, f"http://127.0.0.1:{health_port}/readyz", data=b"x" * 10_000, timeout=5
    )
    assert answer.status_code == 405, answer.text
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == {"GET", "HEAD"}
    assert method in answer.json()["error"]


def test_the_metrics_port_answers_head_and_post_405_with_allow() -> None:
    # prometheus-client's server, not ours: a guard on its upgrades, that HEAD and POST stay a
    # 405 naming GET (no 501).
    from dev.ports import free_port
    from shared.observability import metrics

    port = free_port()
    served = metrics.serve(port, "127.0.0.1")
    assert served is not None
    server, thread = served
    try:
        for method in ("HEAD", "POST"):
            answer = requests.request(method, f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert answer.status_code == 405, (method, answer.status_code)
            assert "GET" in answer.headers["Allow"]
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
