"""The API's OpenAPI description, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from shared.store import AlbumState, ImageState, PostState

_error = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "details": {"type": "array", "items": {"type": "string"}},
        "error_id": {
            "type": "string",
            "description": (
                "on a 500: a short id the server logged with the full detail; quote it to support"
            ),
        },
    },
}
_image = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "state": {"enum": [state.value for state in ImageState]},
        "attempts": {"type": "integer"},
        "photo_id": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_album: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "state": {"enum": [state.value for state in AlbumState]},
        "created_at": {"type": "string"},
        "total": {"type": "integer"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "destination": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["new_album", "album", "post"]},
                "note": {"type": ["string", "null"]},
                "album_id": {"type": ["string", "null"]},
                "post": {
                    "type": "object",
                    "properties": {
                        # Every state the API answers, from the store's enums.
                        "state": {"enum": [*(state.value for state in PostState), None]},
                        "id": {"type": ["string", "null"]},
                        "url": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
    },
}
#: An album in a list: the album without its images.
_album_listed = {
    "type": "object",
    "properties": {
        name: schema for name, schema in _album["properties"].items() if name != "images"
    },
}
_album_id = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[0-9A-Za-z_-]+$"}
# An existing album needs its id; the other kinds take none.
_destination = {
    "oneOf": [
        {
            "type": "object",
            "required": ["kind"],
            "additionalProperties": False,
            "properties": {"kind": {"enum": ["new_album", "post"]}},
        },
        {
            "type": "object",
            "required": ["kind", "id"],
            "additionalProperties": False,
            "properties": {
                "kind": {"const": "album"},
                "id": {**_album_id, "description": "an album of the Page (GET /api/page/albums)"},
            },
        },
    ]
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _error_as(code: int, description: str) -> dict[str, Any]:
    return {str(code): {**_errors(code)[str(code)], "description": description}}


def _too_many(what: str) -> dict[str, Any]:
    """A 429 with its Retry-After (whole seconds) and the reason."""
    answer = _error_as(
        429,
        f"too many requests: {what}; nothing was done. `error` says which "
        "limit and when to try again",
    )
    answer["429"]["headers"] = {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
    }
    return answer


#: Any bearer token check: its address has tried too many tokens that matched no user.
_SIGN_IN = "the address's sign-in attempts (SIGNIN_RATE_LIMIT)"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Album publisher", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": _error, "Image": _image, "Album": _album},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/albums": {
            "post": {
                "summary": "Publish an album: answers 202 at once, one message per image",
                "description": (
                    "Send an `Idempotency-Key` (1-200 printable ASCII characters, e.g. a UUID) "
                    "to make the request safe to repeat: the same key with the same album "
                    "answers 202 with the first request's album and Location (header "
                    "`Idempotent-Replayed: true`) and publishes nothing again; the same key "
                    "with another album is a 422. Keys are per user and kept as long as their "
                    "album (at least 24 h). A 503 may come from a commit the store did not "
                    "confirm: repeat the request with the same key to learn whether the album "
                    "was recorded. Once the album is recorded the answer is 202, even when "
                    "its messages could not be published yet (`queued: false`): the outbox "
                    "relay sends them."
                ),
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "pattern": "^[\\x20-\\x7e]+$",
                        },
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["title", "images"],
                                "additionalProperties": False,
                                "properties": {
                                    "title": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 200,
                                        "description": "one line: no control characters, no bidi "
                                        "embeddings, overrides or isolates",
                                    },
                                    "description": {
                                        "type": "string",
                                        "maxLength": 1000,
                                        "description": "the album's description on Facebook; "
                                        "no control characters but line breaks and tabs, no "
                                        "bidi embeddings, overrides or isolates",
                                    },
                                    "images": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 200,
                                        "items": {
                                            "oneOf": [
                                                {"type": "string", "description": "an object key"},
                                                {
                                                    "type": "object",
                                                    "required": ["key"],
                                                    "additionalProperties": False,
                                                    "properties": {
                                                        "key": {"type": "string"},
                                                        "caption": {
                                                            "type": "string",
                                                            "maxLength": 1000,
                                                            "description": "the photo's caption on "
                                                            "Facebook; as the album's description",
                                                        },
                                                    },
                                                },
                                            ]
                                        },
                                    },
                                    "notify_email": {"type": "string", "format": "email"},
                                    "destination": _destination,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        {"type": "object"},
                        "accepted (or, for a repeated Idempotency-Key, accepted before)",
                    ),
                    # 409: no Facebook Page to publish to (connect or reconnect one).
                    **_errors(401, 409, 413, 415, 503),
                    **_error_as(
                        400,
                        "the body is not valid JSON (or not UTF-8), "
                        "nests arrays and objects more than 32 deep, or the "
                        "Idempotency-Key is malformed: `error` says which",
                    ),
                    **_error_as(
                        422,
                        "well-formed JSON that fails validation: "
                        "`details` names each field and why (a refused "
                        "character by its code point, e.g. U+202E)",
                    ),
                    **_error_as(500, "an unexpected error: `error_id` is logged with its detail"),
                    **_too_many(
                        f"{_SIGN_IN}, the user's albums published "
                        "(PUBLISH_RATE_LIMIT) or images of the last 24 hours "
                        "(IMAGES_PER_DAY: the whole album is refused)"
                    ),
                },
            },
            "get": {
                "summary": "The caller's albums, newest first, a page at a time",
                "description": (
                    "Each album as `GET /api/albums/{album_id}` gives it, without "
                    "`images` (`counts` and `total` say how they stand). `limit` albums "
                    "per page (default 100, as the list held before it had pages; at most "
                    "500); `next` is the cursor of the following page, null on the last: "
                    "pass it back as `cursor`. A cursor stays valid as new albums are "
                    "published (they come before it), so pages never skip or repeat one."
                ),
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "a `next` from an earlier page, as it came",
                        "schema": {
                            "type": "string",
                            "maxLength": 200,
                            "pattern": "^[A-Za-z0-9_-]*$",
                        },
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["albums", "next"],
                            "properties": {
                                "albums": {"type": "array", "items": _album_listed},
                                "next": {"type": ["string", "null"]},
                            },
                        },
                        "a page of albums",
                    ),
                    **_error_as(
                        400,
                        "`limit` is not a whole number from 1 to "
                        "500, or `cursor` is not one this API gave",
                    ),
                    **_errors(401),
                    **_too_many(_SIGN_IN),
                },
            },
        },
        "/api/albums/{album_id}": {
            "parameters": [
                {"name": "album_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "summary": "An album's progress, image by image",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Album"}, "album"),
                    **_too_many(_SIGN_IN),
                    **_errors(401, 404),
                },
            },
        },
        "/api/albums/{album_id}/retry": {
            "parameters": [
                {"name": "album_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "post": {
                "summary": "Queue the album's failed images again (from the store; "
                "reads no dead letters)",
                "responses": {
                    "202": _json({"type": "object"}, "re-opened"),
                    **_errors(401, 404, 409),
                    **_too_many(f"{_SIGN_IN} or the user's retries (RETRY_RATE_LIMIT)"),
                },
            },
        },
        "/api/page/albums": {
            "get": {
                "summary": "The Page's albums to publish into",
                "responses": {
                    "200": _json({"type": "object"}, "albums"),
                    **_errors(401, 409, 503),
                    **_too_many(_SIGN_IN),
                },
            }
        },
        "/api/page": {
            "get": {
                "summary": "The caller's connected Facebook Page (id, name, state: "
                "connected, needs_reconnect or blocked; null if none), "
                "whether a single-tenant Page serves users without "
                "one, and where to connect",
                "responses": {
                    "200": _json({"type": "object"}, "page"),
                    **_too_many(_SIGN_IN),
                    **_errors(401),
                },
            }
        },
        "/api/images": {
            "get": {
                "summary": "The caller's images in the bucket",
                "responses": {
                    "200": _json({"type": "object"}, "images"),
                    **_too_many(_SIGN_IN),
                    **_errors(401),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers (checks no dependency)",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "ok")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the store answers and the broker connection is"
                " up; 503 names which check failed",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
    },
}
