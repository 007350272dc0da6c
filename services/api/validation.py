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

_UNSAFE_KEY = re.compile(r"[\x00-\x1f\x7f\\]|(^|/)\.\.?(/|$)|//")
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


def _image_item(position: int, raw: dict[str, Any]) -> ImageItem:
    """One image object, or a ValueError naming its position and field."""
    try:
        item = ImageItem.model_validate(raw)
        _public_text(item.caption)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"images.{position}.{where}: {first['msg']}") from None
    except ValueError as exc:
        raise ValueError(f"images.{position}.caption: {exc}") from None
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
    if len(set(album.images)) != len(album.images):
        raise InvalidAlbum("an image is listed twice")
    bad = [key for key in album.images if not key_is_callers(key, prefix)]
    if bad:
        raise InvalidAlbum(f"{len(bad)} image keys are not under your prefix {prefix!r}", bad[:10])
    return album


def key_is_callers(key: str, prefix: str) -> bool:
    """A full object key under the caller's prefix, with nothing that could escape it."""
    return (
        key.startswith(prefix)
        and len(key) > len(prefix)
        and len(key) <= 1024
        and _UNSAFE_KEY.search(key) is None
    )


def _where(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"
