"""What users see of a failure: a plain reason and an error id, never an exception's text;
the id is logged with the full detail so that support can find it (issue 11)."""

from __future__ import annotations

import logging
import re
import smtplib
from typing import Any

import pytest
import requests
from botocore.exceptions import EndpointConnectionError

from services.api.page_albums import PageAlbums, PageUnavailable
from services.notifier import mailer
from services.uploader import failures
from services.uploader.feed_poster import post_failure
from shared.adapters.graph_client import GraphError, GraphNetworkError
from shared.config.settings import CommonSettings
from shared.policies.fate import Delivery, decide
from tests.unit.test_fate import BODY, Recorder
from tests.unit.test_web import Env, make_env, sign_in

ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")
#: What must never reach a user: exception text, a host, a query, a class name.
SECRET_DETAIL = "SELECT token FROM pages -- 10.9.8.7"


def _logged_with(caplog: pytest.LogCaptureFixture, error_id: str) -> logging.LogRecord:
    """The log record that carries `error_id` and the full detail (the exception)."""
    found = [r for r in caplog.records if error_id in r.getMessage()]
    assert found, f"error id {error_id} was not logged"
    record = found[0]
    assert record.exc_info is not None or SECRET_DETAIL in record.getMessage()
    return record


def _shown_id(text: str) -> str:
    match = ERROR_ID.search(text)
    assert match, f"no error id in {text!r}"
    return match.group(1)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(SECRET_DETAIL),
        KeyError(SECRET_DETAIL),
        requests.ConnectionError(f"HTTPSConnectionPool(host='10.9.8.7'): {SECRET_DETAIL}"),
        EndpointConnectionError(endpoint_url=f"http://10.9.8.7/{SECRET_DETAIL}"),
        OSError(5, SECRET_DETAIL),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_exceptions_text_never_reaches_the_reason(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reason = failures.classify(exc).reason
    assert "10.9.8.7" not in reason and "SELECT" not in reason and type(exc).__name__ not in reason
    _logged_with(caplog, _shown_id(reason))


def test_an_unreachable_facebook_is_said_without_our_addresses() -> None:
    exc = GraphNetworkError(
        "could not complete the Graph API call to http://10.9.8.7:8010: connection refused",
        request_sent=False,
        cause="connection refused",
    )
    reason = failures.classify(exc).reason
    assert "10.9.8.7" not in reason and "connection refused" in reason


def test_facebooks_refusals_keep_their_reason_without_trace_ids() -> None:
    refused = GraphError(
        "(#100) Invalid parameter", http_status=400, code=100, fbtrace_id="AbCdEf123"
    )
    assert "AbCdEf123" not in post_failure(refused).reason
    creation = failures.album_creation_refused(
        GraphError("Permissions error", http_status=403, code=200, fbtrace_id="AbCdEf123")
    )
    assert creation is not None and "AbCdEf123" not in creation
    assert "Permissions error" in creation


def test_a_handlers_bug_shows_an_error_id_not_its_class(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder(RuntimeError(SECRET_DETAIL))
    fate = decide(handler.route(), Delivery(BODY, {}))
    ((failure, _step),) = handler.retries
    assert fate.kind == "retry" and "RuntimeError" not in failure.reason
    assert SECRET_DETAIL not in failure.reason
    _logged_with(caplog, _shown_id(failure.reason))


def test_the_mail_relays_failures_carry_an_error_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for exc in (
        ConnectionRefusedError(111, SECRET_DETAIL),
        smtplib.SMTPServerDisconnected(SECRET_DETAIL),
        ValueError(SECRET_DETAIL),
    ):
        reason = mailer.classify(exc).reason
        assert SECRET_DETAIL not in reason, reason
        _logged_with(caplog, _shown_id(reason))


def test_a_page_that_cannot_be_listed_says_why_in_plain_words(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any) -> Any:
        raise KeyError(SECRET_DETAIL)

    monkeypatch.setattr("shared.adapters.graph_client.GraphClient.list_albums", broken)
    albums = PageAlbums(CommonSettings(_env_file=None))  # type: ignore[call-arg]
    with pytest.raises(PageUnavailable) as unavailable:
        albums.albums("1", "token")
    assert SECRET_DETAIL not in str(unavailable.value)
    _logged_with(caplog, _shown_id(str(unavailable.value)))


@pytest.fixture
def env() -> Env:
    return make_env()


def test_an_unexpected_api_error_is_a_500_with_an_error_id(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(SECRET_DETAIL)

    monkeypatch.setattr(env.store, "album_summaries", broken)
    response = env.app.test_client().get(
        "/api/albums", headers={"Authorization": f"Bearer {env.token}"}
    )
    assert response.status_code == 500
    body = response.get_json()
    assert SECRET_DETAIL not in response.get_data(as_text=True)
    assert re.fullmatch(r"[0-9a-f]{8}", body.get("error_id", "")), body
    assert body["error_id"] in body["error"]
    _logged_with(caplog, body["error_id"])
    # Once, under its id: not a second time by Flask's own "Exception on ..." record.
    traced = [r for r in caplog.records if r.exc_info and SECRET_DETAIL in str(r.exc_info[1])]
    assert len(traced) == 1, [r.getMessage() for r in traced]


def test_an_unexpected_page_error_shows_the_error_id(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(SECRET_DETAIL)

    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    monkeypatch.setattr(env.store, "album_summaries", broken)
    response = client.get("/albums")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert SECRET_DETAIL not in page and ERROR_ID.search(page), page[-600:]
