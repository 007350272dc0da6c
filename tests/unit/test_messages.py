import pytest

from shared.contracts.messages import (
    MAX_BODY_BYTES,
    AlbumSettled,
    FailedImage,
    ImageUploadRequested,
    PoisonMessage,
    decode,
    encode,
)


def test_an_upload_request_round_trips() -> None:
    message = ImageUploadRequested(album_id="a1", image_id=7, key="users/1/x.png")
    assert decode(encode(message)) == message


def test_a_settled_event_round_trips_with_its_failures() -> None:
    event = AlbumSettled(
        album_id="a1",
        settle_seq=1,
        uploaded=[],
        failed=[FailedImage(image_id=1, key="k", reason="too large")],
    )
    assert decode(encode(event)) == event


def test_messages_carry_no_token_or_email_fields() -> None:
    fields = set(ImageUploadRequested.model_fields) | set(AlbumSettled.model_fields)
    assert not {f for f in fields if "token" in f or "email" in f}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "Invalid JSON"),
        (
            b'{"type": "image.upload_requested", "version": 2, "album_id": "a", "image_id": 1,'
            b' "key": "k"}',
            "version",
        ),
        (b'{"type": "image.upload_requested", "version": 1, "album_id": "a"}', "image_id"),
        (b'{"type": "something.else"}', "does not match"),
        (
            b'{"type": "image.upload_requested", "version": 1, "album_id": "a", "image_id": 1,'
            b' "key": "k", "token": "secret"}',
            "Extra inputs",
        ),
        (b"[1, 2]", "body"),
    ],
)
def test_poison_bodies_are_refused_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(PoisonMessage, match=why):
        decode(body)


def test_an_oversized_body_is_poison_before_parsing() -> None:
    with pytest.raises(PoisonMessage, match="over the"):
        decode(b" " * (MAX_BODY_BYTES + 1))
