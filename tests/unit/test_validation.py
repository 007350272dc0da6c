from typing import Any

import pytest

from services.api.idempotency import InvalidKey, fingerprint, parse_key
from services.api.validation import InvalidAlbum, key_is_callers, parse_album

PREFIX = "users/7/"


def test_a_valid_album_parses() -> None:
    album = parse_album(
        {"title": " Summer ", "images": [PREFIX + "a.png"], "notify_email": "me@example.com"},
        PREFIX,
        200,
    )
    assert album.title == "Summer"
    assert album.images == [PREFIX + "a.png"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "JSON object"),
        ({"title": "t", "images": []}, "invalid album"),
        ({"title": "", "images": [PREFIX + "a"]}, "invalid album"),
        ({"images": [PREFIX + "a"]}, "invalid album"),
        ({"title": "t", "images": [PREFIX + "a"], "notify_email": "not-an-email"}, "invalid album"),
        ({"title": "t", "images": [PREFIX + "a"], "extra": 1}, "invalid album"),
        ({"title": "t", "images": [PREFIX + "a", PREFIX + "a"]}, "twice"),
        ({"title": "t", "images": ["users/8/a.png"]}, "not under your prefix"),
        ({"title": "t", "images": [f"{PREFIX}{n}.png" for n in range(201)]}, "at most 200"),
    ],
)
def test_bad_albums_are_refused_with_a_reason(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidAlbum, match=reason):
        parse_album(payload, PREFIX, 200)


@pytest.mark.parametrize(
    "key",
    [
        "users/7/../8/a.png",
        "users/7//a.png",
        "users/7/./a.png",
        "users/7/a\\b.png",
        "users/7/a\nb.png",
        "users/7/",
        "users/70/a.png",
        "x" * 2000,
    ],
)
def test_keys_that_could_escape_the_prefix_are_not_the_callers(key: str) -> None:
    assert not key_is_callers(key, PREFIX)


def test_a_nested_key_under_the_prefix_is_the_callers() -> None:
    assert key_is_callers("users/7/trips/2026/a.png", PREFIX)


# -- Idempotency-Key -----------------------------------------------------------------------------


def test_a_key_of_printable_characters_up_to_200_is_kept_as_sent() -> None:
    assert parse_key(None) is None
    assert parse_key("3f1c-Ab_9 ~!") == "3f1c-Ab_9 ~!"
    assert parse_key("k" * 200) == "k" * 200


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("k" * 201, "201 characters long; at most 200"),
        ("tab\there", "printable"),
        ("caf\u00e9", "printable"),
        ("nul\x00", "printable"),
    ],
)
def test_an_unusable_key_is_refused_with_a_reason(key: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason) as refused:
        parse_key(key)
    assert "Idempotency-Key" in refused.value.reason


def test_the_same_album_has_the_same_fingerprint_and_another_album_another() -> None:
    def album(**changes: Any) -> str:
        payload = {"title": "Summer", "images": [PREFIX + "a.png", PREFIX + "b.png"], **changes}
        return fingerprint(parse_album(payload, PREFIX, 200))

    assert album() == album(title="  Summer ")  # as validated, spacing aside
    assert (
        len(
            {
                album(),
                album(title="Winter"),
                album(images=[PREFIX + "a.png"]),
                album(images=[PREFIX + "b.png", PREFIX + "a.png"]),
                album(notify_email="me@example.com"),
            }
        )
        == 5
    )


def test_images_may_carry_a_caption_and_the_album_a_description() -> None:
    album = parse_album(
        {
            "title": "Summer",
            "description": " By the sea ",
            "images": [
                PREFIX + "a.png",
                {"key": PREFIX + "b.png", "caption": " Beach\nat dusk "},
                {"key": PREFIX + "c.png"},
                {"key": PREFIX + "d.png", "caption": ""},
            ],
        },
        PREFIX,
        200,
    )
    assert album.images == [PREFIX + n for n in ("a.png", "b.png", "c.png", "d.png")]
    assert album.captions == [None, "Beach\nat dusk", None, None]
    assert album.description == "By the sea"


@pytest.mark.parametrize(
    ("image", "where"),
    [
        (
            {"key": PREFIX + "a.png", "caption": "bell\x07"},
            "images.0.caption: must not hold U+0007, a control character",
        ),
        (
            {"key": PREFIX + "a.png", "caption": "x" * 1001},
            "images.0.caption: String should have at",
        ),
        ({"key": PREFIX + "a.png", "title": "x"}, "images.0.title: Extra inputs"),
        ({"caption": "x"}, "images.0.key: Field required"),
    ],
)
def test_a_bad_image_object_is_refused_naming_its_place(image: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidAlbum) as refused:
        parse_album({"title": "t", "images": [image]}, PREFIX, 200)
    assert any(where in detail for detail in refused.value.details), refused.value.details


def test_an_image_objects_detail_is_named_like_a_string_images() -> None:
    """`images.1.caption: ...`, as the README's example, not `body: images.1.caption: ...`."""
    images = [PREFIX + "a.png", {"key": PREFIX + "b.png", "caption": "x" * 1001}]
    with pytest.raises(InvalidAlbum) as refused:
        parse_album({"title": "t", "images": images}, PREFIX, 200)
    (detail,) = refused.value.details
    assert detail.startswith("images.1.caption: "), detail


def test_an_image_listed_twice_is_named() -> None:
    key = PREFIX + "a.png"
    with pytest.raises(InvalidAlbum) as refused:
        parse_album({"title": "t", "images": [key, PREFIX + "b.png", key]}, PREFIX, 200)
    assert key in refused.value.reason and "images.2" in refused.value.reason, refused.value
    assert refused.value.details == [f"images.2: {key!r} is already images.0"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (PREFIX + "a\x00.png", "U+0000"),
        (PREFIX + "a\nb.png", "U+000A"),
        (PREFIX + "a\\b.png", "backslash"),
        (PREFIX + "../8/a.png", "'..'"),
        (PREFIX + "./a.png", "'.'"),
        (PREFIX + "trips//a.png", "'//'"),
        (PREFIX + "x" * 1100, "1024"),
    ],
)
def test_an_unsafe_key_is_refused_saying_what_is_wrong(key: str, why: str) -> None:
    with pytest.raises(InvalidAlbum) as refused:
        parse_album({"title": "t", "images": [PREFIX + "ok.png", key]}, PREFIX, 200)
    assert "prefix" not in refused.value.reason, refused.value.reason
    (detail,) = refused.value.details
    assert detail.startswith("images.1: ") and why in detail, detail


def test_a_description_with_control_characters_is_refused() -> None:
    with pytest.raises(InvalidAlbum) as refused:
        parse_album({"title": "t", "description": "a\x1bb", "images": [PREFIX + "a"]}, PREFIX, 200)
    assert "description" in refused.value.details[0]


def test_captions_change_the_fingerprint_and_plain_keys_keep_theirs() -> None:
    plain = {"title": "Summer", "images": [PREFIX + "a.png"]}
    objects = {"title": "Summer", "images": [{"key": PREFIX + "a.png"}]}
    captioned = {"title": "Summer", "images": [{"key": PREFIX + "a.png", "caption": "Beach"}]}
    prints = [fingerprint(parse_album(p, PREFIX, 200)) for p in (plain, objects, captioned)]
    assert prints[0] == prints[1] != prints[2]
