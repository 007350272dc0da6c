"""Bad input to the JSON API: a body that does not parse, or nests too deep, is a 400 with a
reason; well-formed JSON that fails validation is a 422; user text that goes to Facebook or
into an email holds no control or bidi-override characters (issue 11)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from waitress.utilities import RequestEntityTooLarge

from services.api.openapi import SPEC
from services.api.request_limits import error_answer
from services.api.security_headers import common_headers
from tests.unit.test_web import Env, make_env


@pytest.fixture
def env() -> Env:
    return make_env()


def _post(env: Env, body: str | bytes) -> Any:
    return env.app.test_client().post(
        "/api/albums",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {env.token}"},
    )


def _album(env: Env, **fields: Any) -> dict[str, Any]:
    return {"title": "Summer", "images": [f"{env.user.prefix}a.png"], **fields}


@pytest.mark.parametrize("body", ['{"title": "x", ', "not json", '{"title": "x"}}', b"\xff\xfe"])
def test_a_body_that_does_not_parse_is_a_400_with_a_reason(env: Env, body: str) -> None:
    response = _post(env, body)
    assert response.status_code == 400, response.get_json()
    assert "not valid JSON" in response.get_json()["error"]
    assert env.services.fake_outbox.published == []


@pytest.mark.parametrize("number", ["1" + "0" * 5000, "-" + "9" * 4301, "1" * 100_000])
def test_a_number_too_long_to_read_is_a_400_with_a_reason(env: Env, number: str) -> None:
    """Python refuses to turn more than 4300 digits into an int (a ValueError json.loads lets
    through): a body holding one is unreadable, not a 500."""
    image = f"{env.user.prefix}photo-01.png"
    response = _post(env, f'{{"title":"x","images":["{image}"],"notify_email":{number}}}')
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "digits" in response.get_json()["error"]
    assert env.services.fake_outbox.published == []


def test_a_long_number_within_the_limit_is_left_to_validation(env: Env) -> None:
    response = _post(env, f'{{"title":"x","images":["{env.user.prefix}a.png"],"n":{"7" * 4300}}}')
    assert response.status_code == 422, response.get_data(as_text=True)[:300]


def test_a_process_limit_below_4300_digits_is_the_limit(env: Env) -> None:
    """PYTHONINTMAXSTRDIGITS may set the interpreter's limit lower: that one holds."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        body = f'{{"title":"x","images":["{env.user.prefix}a.png"],"n":{"7" * 1000}}}'
        response = _post(env, body)
    finally:
        sys.set_int_max_str_digits(before)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "640 digits" in response.get_json()["error"]


def test_the_depth_limit_is_32_levels(env: Env) -> None:
    # 32 levels parse and fail validation (422, not an album); 33 are refused unread (400).
    assert _post(env, "[" * 32 + "]" * 32).status_code == 422
    assert _post(env, "[" * 33 + "]" * 33).status_code == 400


@pytest.mark.parametrize("depth", [64, 5000, 100_000])
def test_a_body_nested_too_deep_is_a_400_with_a_reason(env: Env, depth: int) -> None:
    response = _post(env, "[" * depth + "]" * depth)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "nested" in response.get_json()["error"]


def test_well_formed_json_that_fails_validation_stays_a_422(env: Env) -> None:
    assert _post(env, "[]").status_code == 422
    assert _post(env, '{"title": "", "images": []}').status_code == 422


def test_the_openapi_description_tells_400_from_422() -> None:
    post = SPEC["paths"]["/api/albums"]["post"]
    assert "400" in post["responses"] and "422" in post["responses"]
    assert "not valid JSON" in post["responses"]["400"]["description"]
    assert "validation" in post["responses"]["422"]["description"]


@pytest.mark.parametrize(
    ("field", "value", "where", "point"),
    [
        ("title", "evil\u202etxt.exe", "title", "U+202E"),
        ("title", "two\nlines", "title", "U+000A"),
        ("title", "bell\x07", "title", "U+0007"),
        ("title", "c1\x85x", "title", "U+0085"),
        ("description", "isolate \u2067x\u2069", "description", "U+2067"),
        ("description", "embed \u202ax", "description", "U+202A"),
        ("description", "nul \x00", "description", "U+0000"),
    ],
)
def test_control_and_bidi_characters_are_refused_naming_field_and_code_point(
    env: Env, field: str, value: str, where: str, point: str
) -> None:
    response = env.app.test_client().post(
        "/api/albums",
        json=_album(env, **{field: value}),
        headers={"Authorization": f"Bearer {env.token}"},
    )
    assert response.status_code == 422, response.get_json()
    text = " ".join(response.get_json()["details"])
    assert where in text and point in text, text
    assert env.services.fake_outbox.published == []


def test_a_caption_with_a_bidi_override_names_its_image_and_code_point(env: Env) -> None:
    images = [
        f"{env.user.prefix}a.png",
        {"key": f"{env.user.prefix}b.png", "caption": "fine\u202egnp.exe"},
    ]
    response = env.app.test_client().post(
        "/api/albums",
        json={"title": "t", "images": images},
        headers={"Authorization": f"Bearer {env.token}"},
    )
    assert response.status_code == 422
    text = " ".join(response.get_json()["details"])
    assert "images.1.caption" in text and "U+202E" in text, text


def test_multi_line_text_keeps_its_line_breaks_and_tabs(env: Env) -> None:
    images = [{"key": f"{env.user.prefix}b.png", "caption": "line one\nline\ttwo"}]
    response = env.app.test_client().post(
        "/api/albums",
        json={"title": "t", "images": images, "description": "a\nb\tc \u05e9\u05dc\u05d5\u05dd"},
        headers={"Authorization": f"Bearer {env.token}"},
    )
    assert response.status_code == 202, response.get_json()


def _details(env: Env, images: list[Any]) -> tuple[str, list[str]]:
    response = env.app.test_client().post(
        "/api/albums",
        json={"title": "t", "images": images},
        headers={"Authorization": f"Bearer {env.token}"},
    )
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    return body["error"], body.get("details", [])


def test_every_detail_names_its_image_as_the_readme_does(env: Env) -> None:
    """`images.3.caption`: an image object's detail is named like a string image's."""
    prefix = env.user.prefix
    _, details = _details(env, [f"{prefix}a.png", {"key": f"{prefix}b.png", "caption": "\x07"}])
    assert details[0].startswith("images.1.caption: must not hold U+0007"), details
    _, details = _details(env, [f"{prefix}a.png", 7])
    assert details[0].startswith("images.1: "), details


def test_a_key_listed_twice_and_a_key_with_a_nul_are_named(env: Env) -> None:
    key = f"{env.user.prefix}a.png"
    error, details = _details(env, [key, key])
    assert key in error and details == [f"images.1: {key!r} is already images.0"], error
    error, details = _details(env, [f"{env.user.prefix}a\x00.png"])
    assert "prefix" not in error, error
    assert details[0].startswith("images.0: ") and "U+0000" in details[0], details


def test_a_refusal_of_the_server_itself_is_json_on_the_api() -> None:
    """A body over API_MAX_BODY_BYTES is refused by waitress before Flask sees it (the served
    413: tests/integration/test_slow_clients.py); its answer is the API's JSON all the same."""
    too_large = RequestEntityTooLarge(
        "a request body may have at most 5 bytes (API_MAX_BODY_BYTES)"
    )
    common = common_headers(https=True)
    status, headers, body = error_answer(too_large, "/api/albums", "", common)
    assert status.startswith("413 ")
    assert ("Content-Type", "application/json") in headers
    # Every answer's headers, as the app's: HSTS too when the API is served over https.
    assert set(common) <= set(headers) and ("Cache-Control", "no-store") in headers
    assert "Strict-Transport-Security" in dict(headers)
    assert json.loads(body) == {"error": too_large.body}
    _, page_headers, _ = error_answer(too_large, "/albums/new", "text/html", common)
    assert ("X-Content-Type-Options", "nosniff") in page_headers
