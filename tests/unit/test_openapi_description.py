"""The OpenAPI description says what the API takes: a body it calls valid is not refused for
the same field (found by the fuzzer, `make security`: `{"kind": "post", "id": ""}` passed the
description and was refused)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from services.api.openapi import SPEC
from services.api.validation import InvalidAlbum, parse_album
from shared.store import AlbumState, ImageState, PostState

PREFIX = "users/1/"


def _body_schema() -> dict[str, Any]:
    body = SPEC["paths"]["/api/albums"]["post"]["requestBody"]["content"]["application/json"]
    return {**body["schema"], "components": SPEC["components"]}


@pytest.mark.parametrize(
    "destination",
    [
        {"kind": "new_album"},
        {"kind": "post"},
        {"kind": "album", "id": "314159"},
        {"kind": "post", "id": ""},
        {"kind": "post", "id": "1"},
        {"kind": "new_album", "id": "1"},
        {"kind": "album"},
        {"kind": "album", "id": ""},
        {"kind": "album", "id": "a b"},
        {"kind": "album", "id": "9" * 65},
    ],
)
def test_the_description_and_the_validation_agree_on_destinations(
    destination: dict[str, Any],
) -> None:
    body = {"title": "Summer", "images": [f"{PREFIX}a.png"], "destination": destination}
    described = jsonschema.Draft202012Validator(_body_schema()).is_valid(body)
    try:
        parse_album(body, PREFIX, 200)
        accepted = True
    except InvalidAlbum:
        accepted = False
    assert described == accepted, f"description says {described}, the API {accepted}"


def test_every_state_the_api_answers_is_described() -> None:
    """A paused image or post (its Page must be reconnected) is answered by the API: a client
    validating answers against the description must not refuse it."""
    schemas = SPEC["components"]["schemas"]
    album = schemas["Album"]["properties"]
    post_states = album["destination"]["properties"]["post"]["properties"]["state"]["enum"]
    assert set(schemas["Image"]["properties"]["state"]["enum"]) == set(ImageState)
    assert set(album["state"]["enum"]) == set(AlbumState)
    assert set(post_states) == {*PostState, None}
    assert "paused" in post_states
