"""Versioned message schemas: what travels over the broker, and nothing more.

Messages carry ids and object keys only (operators can read payloads in the management UI):
no tokens, no email addresses, no image bytes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

#: Largest body a consumer will parse; anything bigger is poison, whatever it claims to be.
MAX_BODY_BYTES = 64 * 1024


class PoisonMessage(ValueError):
    """A body that can never be processed: it goes to the dead letters on its first delivery."""


class MessageMismatch(PoisonMessage):
    """A message naming something other than what the store holds (forged by whoever may
    publish, or a bug): the store owns keys, albums and outcomes, so it can never be processed
    as it says. Dead-lettered with its reason, and nothing it names is changed."""

    def __init__(self, what: str, differs: str) -> None:
        super().__init__(f"message does not match the stored {what}: {differs}")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageUploadRequested(_Message):
    """Command: upload one image of an album to Facebook."""

    type: Literal["image.upload_requested"] = "image.upload_requested"
    version: Literal[1] = 1
    album_id: str = Field(min_length=1, max_length=64)
    image_id: int = Field(ge=1)
    key: str = Field(min_length=1, max_length=1024)


class UploadedImage(_Message):
    image_id: int
    key: str
    photo_id: str


class FailedImage(_Message):
    image_id: int
    key: str
    reason: str


class AlbumSettled(_Message):
    """Event: every image of an album has ended (uploaded or failed)."""

    type: Literal["album.settled"] = "album.settled"
    version: Literal[1] = 1
    album_id: str = Field(min_length=1, max_length=64)
    #: Goes up by one each time the album settles again (after a replay re-opens it).
    settle_seq: int = Field(ge=1)
    uploaded: list[UploadedImage]
    failed: list[FailedImage]


class FeedPostRequested(_Message):
    """Command: an album sent as one multi-photo post has settled with photos: post them.

    The album's `AlbumSettled` (and so its email) follows once the post ended."""

    type: Literal["feed.post_requested"] = "feed.post_requested"
    version: Literal[1] = 1
    album_id: str = Field(min_length=1, max_length=64)
    settle_seq: int = Field(ge=1)


AnyMessage = ImageUploadRequested | AlbumSettled | FeedPostRequested
Message = Annotated[AnyMessage, Field(discriminator="type")]
_adapter: TypeAdapter[AnyMessage] = TypeAdapter(Message)


def encode(message: _Message) -> bytes:
    return message.model_dump_json().encode()


def decode(body: bytes) -> AnyMessage:
    """Parse a body, or raise PoisonMessage saying why it can never be processed."""
    if len(body) > MAX_BODY_BYTES:
        raise PoisonMessage(f"body of {len(body)} bytes is over the {MAX_BODY_BYTES} byte limit")
    try:
        return _adapter.validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"invalid message ({exc.error_count()} errors), first at {where}: {first['msg']}"
