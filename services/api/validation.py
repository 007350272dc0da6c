"""What a publish request must look like: plain checks, no I/O."""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from shared import store

from . import text_rules

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOT_SEGMENT = re.compile(r"(^|/)(\.\.?)(/|$)")
MAX_KEY = 1024
#: Public text the user writes: a photo's caption, the album's description.
MAX_TEXT = 1000


class ImageItem(BaseModel):
    """An image given as an object: its key and, optionally, its caption on Facebook."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str
    caption: str | None = Field(default=None, max_length=MAX_TEXT)


class Destination(BaseModel):
    """Where the album goes (shared/contracts/destinations.py): `{"kind": "new_album"}`,
    `{"kind": "album", "id": "<an album of the Page>"}` or `{"kind": "post"}`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    kind: Literal["new_album", "album", "post"] = "new_album"
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")

    @model_validator(mode="after")
    def _id_only_for_an_album(self) -> Self:
        if self.kind == store.Destination.EXISTING_ALBUM.value and self.id is None:
            raise ValueError('an existing album needs its "id" (GET /api/page/albums lists them)')
        if self.kind != store.Destination.EXISTING_ALBUM.value and self.id is not None:
            raise ValueError(f'"id" goes only with kind "album", not "{self.kind}"')
        return self


class AlbumRequest(BaseModel):
    """`images` are keys, or objects {"key", "caption"?}: held as `images` (keys) and
    `captions` (by position; None: no caption)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    images: list[str] = Field(min_length=1)
    captions: list[str | None] = Field(default_factory=list)
    notify_email: EmailStr | None = None
    destination: Destination = Destination()

    @model_validator(mode="before")
    @classmethod
    def _split_images(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            return data
        if "captions" in data:
            raise ValueError('give each image\'s caption with it: {"key", "caption"}')
        items = [
            _image_item(n, i) if isinstance(i, dict) else i for n, i in enumerate(data["images"])
        ]
        return {
            **data,
            "images": [i.key if isinstance(i, ImageItem) else i for i in items],
            "captions": [i.caption or None if isinstance(i, ImageItem) else None for i in items],
        }

    @field_validator("title")
    @classmethod
    def _one_clean_line(cls, value: str) -> str:
        return _public_text(value, multi_line=False) or ""

    @field_validator("description")
    @classmethod
    def _clean_lines(cls, value: str | None) -> str | None:
        return _public_text(value)

    @field_validator("captions")
    @classmethod
    def _clean_captions(cls, values: list[str | None]) -> list[str | None]:
        return [_public_text(v) for v in values]


class _ImageError(ValueError):
    """What is wrong with one image object, and where (`images.3.caption`). Raised in a
    "before" validator, whose errors pydantic places at the body's root: `_where` names
    the field from here instead, as a string image's error is named."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def _image_item(position: int, raw: dict[str, Any]) -> ImageItem:
    """One image object, or an _ImageError naming its position and field."""
    try:
        item = ImageItem.model_validate(raw)
        _public_text(item.caption)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _ImageError(f"images.{position}.{where}", first["msg"]) from None
    except ValueError as exc:
        raise _ImageError(f"images.{position}.caption", str(exc)) from None
    return item


def _public_text(value: str | None, multi_line: bool = True) -> str | None:
    """The text, or a ValueError naming the first character Facebook or an email must not get."""
    if value is not None and (bad := text_rules.first_refused(value, multi_line)) is not None:
        raise ValueError(bad)
    return value or None


class InvalidAlbum(ValueError):
    def __init__(self, reason: str, details: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or []


def parse_album(payload: object, prefix: str, max_images: int) -> AlbumRequest:
    """The request as a valid album of the caller's own images, or InvalidAlbum saying why."""
    if not isinstance(payload, dict):
        raise InvalidAlbum("the body must be a JSON object")
    try:
        album = AlbumRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidAlbum("invalid album", [_where(e) for e in exc.errors()]) from None
    if len(album.images) > max_images:
        raise InvalidAlbum(
            f"an album holds at most {max_images} images, this one has {len(album.images)}"
        )
    _check_unique(album.images)
    flawed = [
        f"images.{n}: {flaw}" for n, key in enumerate(album.images) if (flaw := key_flaw(key))
    ]
    if flawed:
        raise InvalidAlbum(f"an image key cannot be an object key: {flawed[0]}", flawed[:10])
    # Every key is a sound object key by now (key_flaw): only where it lies is left to check.
    bad = [key for key in album.images if not _under(key, prefix)]
    if bad:
        raise InvalidAlbum(f"{len(bad)} image keys are not under your prefix {prefix!r}", bad[:10])
    return album


def _check_unique(keys: list[str]) -> None:
    """InvalidAlbum naming each key listed again and where it was first."""
    first: dict[str, int] = {}
    again: list[str] = []
    for n, key in enumerate(keys):
        if key in first:
            again.append(f"images.{n}: {key!r} is already images.{first[key]}")
        else:
            first[key] = n
    if again:
        raise InvalidAlbum(f"an image is listed twice: {again[0]}", again[:10])


def key_flaw(key: str) -> str | None:
    """Why `key` cannot be an object key of ours, whoever's prefix it names (None: it can):
    what could climb out of a prefix, or reach S3, the logs or a page as something else."""
    if (control := _CONTROL.search(key)) is not None:
        return f"a key must not hold U+{ord(control.group()):04X}, a control character"
    if "\\" in key:
        return "a key must not hold a backslash"
    if (segment := _DOT_SEGMENT.search(key)) is not None:
        return f"a key must not hold a {segment.group(2)!r} path segment"
    if "//" in key:
        return "a key must not hold an empty path segment ('//')"
    if len(key) > MAX_KEY:
        return f"a key is at most {MAX_KEY} characters, this one has {len(key)}"
    return None


def key_is_callers(key: str, prefix: str) -> bool:
    """A full object key under the caller's prefix, with nothing that could escape it."""
    return _under(key, prefix) and key_flaw(key) is None


def _under(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and len(key) > len(prefix)


def _where(error: ErrorDetails) -> str:
    named = (error.get("ctx") or {}).get("error")
    if isinstance(named, _ImageError):  # an image object's error: named where it is
        return f"{named.where}: {named.reason}"
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"
