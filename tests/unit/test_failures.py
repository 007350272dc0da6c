"""Table-driven tests for `classify`: every Graph code family, network and S3 failures."""

from __future__ import annotations

import http.client

import pytest
import requests
import urllib3.exceptions
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from services.uploader.failures import (
    DuplicateNotFound,
    classify,
    may_have_landed,
)
from shared.adapters.graph_client import GraphError, GraphNetworkError, SourceTruncatedError
from shared.policies.retry_policy import Failure, FailureKind

TRANSIENT = FailureKind.TRANSIENT
THROTTLED = FailureKind.THROTTLED
PERMANENT = FailureKind.PERMANENT
AUTH = FailureKind.AUTH


def graph(
    code: int | None,
    status: int | None = 400,
    message: str = "(#0) something",
    **fields: object,
) -> GraphError:
    return GraphError(message, http_status=status, code=code, **fields)  # type: ignore[arg-type]


def s3_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    # Only what classify() reads; botocore's types ask for every metadata key.
    return ClientError(response, operation)  # type: ignore[arg-type]


GRAPH_CASES = [
    # Transient by code, whatever the status.
    (graph(1, 500), TRANSIENT, 1),
    (graph(2, 500, is_transient=True), TRANSIENT, 2),
    (graph(341, 400), TRANSIENT, 341),
    # Throttling: app, user, page, custom, Pages BUC range; status does not matter.
    (graph(4, 403, is_transient=True), THROTTLED, 4),
    (graph(17, 400), THROTTLED, 17),
    (graph(32, 400), THROTTLED, 32),
    (graph(613, 400), THROTTLED, 613),
    (graph(80001, 400), THROTTLED, 80001),
    (graph(80014, 400), THROTTLED, 80014),
    # Auth: token and permission problems.
    (graph(190, 400, subcode=463), AUTH, 190),
    (graph(102, 400), AUTH, 102),
    (graph(10, 403), AUTH, 10),
    (graph(200, 403), AUTH, 200),
    (graph(299, 403), AUTH, 299),
    # Permanent for this request, even if Meta flags it transient.
    (graph(100, 400), PERMANENT, 100),
    (graph(324, 400), PERMANENT, 324),
    (graph(120, 400), PERMANENT, 120),
    (graph(220, 400), PERMANENT, 220),
    (graph(321, 400), PERMANENT, 321),
    (graph(368, 400, is_transient=True), PERMANENT, 368),
    (graph(506, 400), PERMANENT, 506),
    (graph(3, 400), PERMANENT, 3),
    # Unknown codes: is_transient and 5xx mean retry, other 4xx mean stop.
    (graph(9999, 400), PERMANENT, 9999),
    (graph(9999, 400, is_transient=True), TRANSIENT, 9999),
    (graph(9999, 503), TRANSIENT, 9999),
    (graph(9999, 429), THROTTLED, 9999),
    # No Graph body: the HTTP status decides; code falls back to the status.
    (graph(None, 500), TRANSIENT, 500),
    (graph(None, 502), TRANSIENT, 502),
    (graph(None, 503), TRANSIENT, 503),
    (graph(None, 408), TRANSIENT, 408),
    (graph(None, 429), THROTTLED, 429),
    (graph(None, 404), PERMANENT, 404),
    (graph(None, 200), TRANSIENT, 200),
]


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    GRAPH_CASES,
    ids=[f"code={exc.code}-http={exc.http_status}" for exc, _, _ in GRAPH_CASES],
)
def test_graph_errors_classified_by_code(exc: GraphError, kind: FailureKind, code: int) -> None:
    failure = classify(exc)
    assert failure.kind is kind
    assert failure.code == code
    assert failure.reason


NETWORK_CASES = [
    GraphNetworkError("could not complete the Graph API call: connection refused"),
    requests.ConnectionError("reset"),
    requests.ConnectTimeout("slow"),
    requests.ReadTimeout("slow"),
    requests.exceptions.ChunkedEncodingError("cut"),
    urllib3.exceptions.ProtocolError("Connection aborted."),
    urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"),  # type: ignore[arg-type]
    http.client.IncompleteRead(b"abc", 10),
    http.client.RemoteDisconnected("closed"),
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
    TimeoutError("timed out"),
    OSError(5, "Input/output error"),
    SourceTruncatedError("photo stream ended with 10 bytes unread"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:9000"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:9000"),
    ConnectionClosedError(endpoint_url="http://127.0.0.1:9000"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:9000"),
    IncompleteReadError(actual_bytes=10, expected_bytes=20),
    ResponseStreamingError(error="connection broken"),
]


@pytest.mark.parametrize("exc", NETWORK_CASES, ids=lambda e: type(e).__name__)
def test_network_and_io_errors_are_transient(exc: BaseException) -> None:
    failure = classify(exc)
    assert failure == Failure(TRANSIENT, failure.reason, None, None, failure.in_doubt)
    assert failure.reason


@pytest.mark.parametrize(
    ("exc", "in_doubt"),
    [
        (GraphNetworkError("read timed out"), True),
        (GraphNetworkError("connection reset after sending"), True),
        (GraphNetworkError("connect timed out", request_sent=False), False),
        (GraphNetworkError("connection refused", request_sent=False), False),
        (graph(None, 502), True),
        (graph(2, 500), True),
        (graph(None, 200), True),
        (graph(613, 429), False),
        (graph(324, 400), False),
        (requests.ReadTimeout("an S3 or other call, not Facebook"), False),
    ],
    ids=[
        "read-timeout",
        "reset",
        "connect-timeout",
        "refused",
        "bare-502",
        "graph-500",
        "unreadable-2xx",
        "throttled",
        "refused-image",
        "not-graph",
    ],
)
def test_a_failure_after_the_request_may_have_reached_facebook_is_in_doubt(
    exc: BaseException, in_doubt: bool
) -> None:
    assert classify(exc).in_doubt is in_doubt


S3_CASES = [
    ("NoSuchKey", 404, PERMANENT),
    ("404", 404, PERMANENT),  # head_object on a missing key: no body, so no NoSuchKey
    ("NoSuchBucket", 404, PERMANENT),
    ("AccessDenied", 403, PERMANENT),
    ("InvalidRange", 416, PERMANENT),
    ("InternalError", 500, TRANSIENT),
    ("ServiceUnavailable", 503, TRANSIENT),
    ("SlowDown", 503, TRANSIENT),
    ("RequestTimeout", 400, TRANSIENT),
    ("BadGateway", 502, TRANSIENT),
]


@pytest.mark.parametrize(("s3_code", "status", "kind"), S3_CASES)
def test_s3_client_errors(s3_code: str, status: int, kind: FailureKind) -> None:
    failure = classify(s3_error(s3_code, status))
    assert failure.kind is kind
    assert failure.code == status
    assert failure.wait_s is None


def test_missing_s3_key_says_not_found_in_the_bucket() -> None:
    assert classify(s3_error("NoSuchKey", 404)).reason == "not found in the bucket"
    assert classify(s3_error("404", 404, "HeadObject")).reason == "not found in the bucket"


@pytest.mark.parametrize(
    ("regain_minutes", "retry_after", "wait"),
    [
        (2, None, 120.0),
        (None, 30.0, 30.0),
        (1, 90.0, 90.0),  # the longer hint wins
        (3, 10.0, 180.0),
        (None, None, None),
        (0, None, None),  # 0 means "not blocked": no usable hint
    ],
)
def test_throttle_wait_uses_the_longest_hint(
    regain_minutes: float | None, retry_after: float | None, wait: float | None
) -> None:
    exc = graph(613, 400, regain_access_minutes=regain_minutes, retry_after_s=retry_after)
    failure = classify(exc)
    assert failure.kind is THROTTLED
    assert failure.wait_s == wait


def test_plain_429_uses_retry_after() -> None:
    failure = classify(graph(None, 429, retry_after_s=15.0))
    assert (failure.kind, failure.code, failure.wait_s) == (THROTTLED, 429, 15.0)


def test_throttle_reason_names_the_code() -> None:
    failure = classify(graph(613, 400, message="(#613) Calls to this api have exceeded the rate"))
    assert failure.reason == "Facebook is throttling these calls (code 613)"
    assert classify(graph(32)).reason == "Facebook is throttling this page (code 32)"
    assert classify(graph(80001)).reason == "Facebook is throttling this page (code 80001)"


@pytest.mark.parametrize(
    ("message", "subcode", "detail"),
    [
        (
            "(#324) Missing or invalid image file: unsupported image format",
            None,
            "unsupported format",
        ),
        ("(#324) Missing or invalid image file", 2069019, "the file is larger than 10 MB"),
        ("(#324) Requires upload file", None, "no image file was sent"),
        ("(#324) Missing or invalid image file: rejected image", None, "rejected image"),
        ("(#324) Missing or invalid image file", None, "missing or invalid image file"),
    ],
)
def test_image_refusals_explain_why(message: str, subcode: int | None, detail: str) -> None:
    failure = classify(graph(324, message=message, subcode=subcode))
    assert failure.kind is PERMANENT
    assert failure.reason == f"Facebook refused the image: {detail} (code 324)"


@pytest.mark.parametrize("code", [190, 102, 10, 200])
def test_auth_reason_asks_the_user_to_reconnect(code: int) -> None:
    failure = classify(graph(code))
    assert failure.kind is AUTH
    assert "reconnect your Facebook page" in failure.reason
    assert f"code {code}" in failure.reason


def test_unknown_graph_error_reason_quotes_graph_without_prefix() -> None:
    failure = classify(graph(9999, message="(#9999) Something odd"))
    assert failure.reason == "Facebook refused the request: Something odd (code 9999)"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("album_id"),
        TypeError("nope"),
        FileNotFoundError(2, "No such file"),
        PermissionError(13, "Permission denied"),
        requests.exceptions.InvalidURL("no host"),
        requests.exceptions.MissingSchema("no scheme"),
        NoCredentialsError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_programming_and_setup_errors_are_permanent_internal_errors(exc: Exception) -> None:
    failure = classify(exc)
    assert failure.kind is PERMANENT
    assert failure.reason.startswith("something went wrong on our side (error id ")
    assert failure.code is None


def test_internal_error_reason_shows_an_error_id_not_the_message() -> None:
    reason = classify(ValueError("bad value")).reason
    assert "bad value" not in reason and "ValueError" not in reason and "error id" in reason


def test_failure_is_frozen() -> None:
    failure = classify(graph(2, 500))
    with pytest.raises(AttributeError):
        failure.kind = PERMANENT  # type: ignore[misc]


def test_waiting_for_another_worker_to_create_the_album_is_transient() -> None:
    from services.uploader.failures import AlbumBeingCreated

    assert classify(AlbumBeingCreated("a1")).kind is FailureKind.TRANSIENT


# Whether a failed create may still have been made -------------------------------------------

MAY_HAVE_LANDED_CASES = [
    (GraphNetworkError("timed out waiting for the response"), True),
    (GraphNetworkError("connection refused", request_sent=False), False),
    (graph(None, 502, "HTTP 502 Bad Gateway"), True),
    (graph(2, 500, is_transient=True), True),
    (graph(1, 500), True),
    (graph(613, 400), False),
    (graph(190, 400), False),
    (graph(100, 400), False),
    (graph(None, 429), False),
    (requests.ReadTimeout("read timed out"), True),
    (ValueError("bug"), False),
]


@pytest.mark.parametrize(("exc", "landed"), MAY_HAVE_LANDED_CASES)
def test_may_have_landed(exc: BaseException, landed: bool) -> None:
    assert may_have_landed(exc) is landed


def test_a_duplicate_not_found_says_what_happened() -> None:
    failure = classify(DuplicateNotFound(7))
    assert failure.kind is TRANSIENT and failure.code == 506
    assert "already posted" in failure.reason and "refused" not in failure.reason
