import pytest

from services.api.validation import InvalidAlbum, key_is_callers, parse_album

PREFIX = "users/7/"


def test_a_valid_album_parses():
    album = parse_album({"title": " Summer ", "images": [PREFIX + "a.png"],
                         "notify_email": "me@example.com"}, PREFIX, 200)
    assert album.title == "Summer"
    assert album.images == [PREFIX + "a.png"]


@pytest.mark.parametrize(("payload", "reason"), [
    ([], "JSON object"),
    ({"title": "t", "images": []}, "invalid album"),
    ({"title": "", "images": [PREFIX + "a"]}, "invalid album"),
    ({"images": [PREFIX + "a"]}, "invalid album"),
    ({"title": "t", "images": [PREFIX + "a"], "notify_email": "not-an-email"}, "invalid album"),
    ({"title": "t", "images": [PREFIX + "a"], "extra": 1}, "invalid album"),
    ({"title": "t", "images": [PREFIX + "a", PREFIX + "a"]}, "twice"),
    ({"title": "t", "images": ["users/8/a.png"]}, "not under your prefix"),
    ({"title": "t", "images": [f"{PREFIX}{n}.png" for n in range(201)]}, "at most 200"),
])
def test_bad_albums_are_refused_with_a_reason(payload, reason):
    with pytest.raises(InvalidAlbum, match=reason):
        parse_album(payload, PREFIX, 200)


@pytest.mark.parametrize("key", [
    "users/7/../8/a.png", "users/7//a.png", "users/7/./a.png", "users/7/a\\b.png",
    "users/7/a\nb.png", "users/7/", "users/70/a.png", "x" * 2000,
])
def test_keys_that_could_escape_the_prefix_are_not_the_callers(key):
    assert not key_is_callers(key, PREFIX)


def test_a_nested_key_under_the_prefix_is_the_callers():
    assert key_is_callers("users/7/trips/2026/a.png", PREFIX)
