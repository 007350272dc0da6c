"""What `make run` prints once it runs: where the browser page, the API, the inbox, the
management UI (and as whom), the metrics, the health endpoints and the operator's dead-letter
desk are; and that it waits for the services to answer first."""

from __future__ import annotations

from email.message import Message
from urllib.error import HTTPError

import pytest
from pydantic import SecretStr

from dev import seed
from dev.seed import banner
from services.api.settings import ApiSettings


def test_the_banner_says_where_everything_an_operator_opens_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAIL_UI_PORT", raising=False)
    settings = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        api_host="127.0.0.1",
        api_port=8000,
        amqp_url="amqp://guest:guest@127.0.0.1:5672/%2F",
        api_secret_key=SecretStr("k"),
    )
    text = banner(
        settings,
        {"uploader": 8001, "notifier": 8002},
        "demo@example.com",
        "tok",
        ["a.png"],
        {"api": 9101, "uploader": 9102, "notifier": 9103},
    )
    assert "Browser:        http://127.0.0.1:8000/   (sign in with the demo user's token)" in text
    assert "Inbox:          http://127.0.0.1:8025\n" in text
    assert "RabbitMQ UI:    http://127.0.0.1:15672   (user guest, AMQP_URL's password)" in text
    assert "Dead letters:   http://127.0.0.1:8000/operator/dead-letters" in text
    # /metrics has ports of its own (README: Metrics and alerts), never the API's or health's.
    assert (
        "Metrics:        http://127.0.0.1:9101/metrics  http://127.0.0.1:9102/metrics  "
        "http://127.0.0.1:9103/metrics  http://127.0.0.1:15692/metrics"
    ) in text
    assert "8000/metrics" not in text and "8001/metrics" not in text
    assert (
        "Health:         http://127.0.0.1:8000/readyz  http://127.0.0.1:8001/readyz  "
        "http://127.0.0.1:8002/readyz\n"
    ) in text
    assert "guest" in text and "tok" in text


def test_the_inbox_is_where_the_mail_catcher_serves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_UI_PORT", "8125")
    settings = ApiSettings(_env_file=None, api_secret_key=SecretStr("k"))  # type: ignore[call-arg]
    assert "Inbox:          http://127.0.0.1:8125\n" in banner(settings, {}, "e", "t", [])


class _Services:
    """/readyz as `make run`'s services answer it while starting: refused, then 503, then 200
    (the fake stands in for the HTTP probe: a unit test opens no connection)."""

    def __init__(self, refusals: dict[str, int]) -> None:
        self.refusals = refusals

    def probe(self, url: str) -> bool:
        left = self.refusals[url]
        self.refusals[url] = left - 1
        if left > 2:
            raise ConnectionRefusedError(url)
        if left > 0:
            raise HTTPError(url, 503, "not ready", Message(), None)
        return True


def test_the_banner_waits_past_refusals_and_not_ready_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _Services({"http://a/readyz": 4, "http://b/readyz": 1})
    monkeypatch.setattr(seed, "_ready", services.probe)
    assert seed.wait_until_ready(list(services.refusals), timeout=30, every=0.001) == []
    assert services.refusals == {"http://a/readyz": -1, "http://b/readyz": -1}


def test_a_service_that_never_answers_is_named_after_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _Services({"http://silent/readyz": 10**9, "http://b/readyz": 0})
    monkeypatch.setattr(seed, "_ready", services.probe)
    late = seed.wait_until_ready(list(services.refusals), timeout=0.05, every=0.001)
    assert late == ["http://silent/readyz"]
    assert services.refusals["http://b/readyz"] == -1  # still asked, once, past the deadline
