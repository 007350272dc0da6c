"""Recognising the photo an uncertain attempt sent, with no mark of ours in public text."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.uploader.photo_match import (
    CLOCK_SKEW,
    Found,
    NotSent,
    Photo,
    Sent,
    Unsure,
    Wait,
    match,
    parse_graph_time,
    same_picture_size,
)

T0 = datetime(2026, 11, 30, 12, 0, 0)


def photo(
    pid: str,
    caption: str = "",
    at: float = 1.0,
    size: tuple[int, int] | None = (4000, 3000),
) -> Photo:
    return Photo(pid, caption, T0 + timedelta(seconds=at), size)


def image(
    iid: int, caption: str = "", since: float = 0.0, size: tuple[int, int] | None = (4000, 3000)
) -> Sent:
    return Sent(iid, caption, size, T0 + timedelta(seconds=since))


def test_the_one_photo_with_its_caption_size_and_time_is_adopted() -> None:
    assert match(image(1, "Beach"), [photo("p1", "Beach")], [], [], 0) == Found("p1")


def test_nothing_alike_means_not_sent() -> None:
    photos = [
        photo("p1", "Dunes"),
        photo("p2", "Beach", size=(3000, 4000)),
        photo("p3", "Beach", at=-CLOCK_SKEW.total_seconds() - 1),
    ]
    assert match(image(1, "Beach"), photos, [], [], 0) == NotSent()


def test_a_photo_recorded_for_another_image_is_never_adopted() -> None:
    assert match(image(1, "Beach"), [photo("p10", "Beach")], ["p10"], [], 0) == NotSent()


def test_graphs_clock_behind_ours_within_the_margin_still_matches() -> None:
    assert match(image(1), [photo("p1", at=-30)], [], [], 0) == Found("p1")


def test_facebook_scaled_down_photo_matches_by_aspect_ratio() -> None:
    assert same_picture_size((2048, 1536), (4000, 3000))
    assert same_picture_size((720, 540), (4000, 3000))
    assert not same_picture_size((2048, 1152), (4000, 3000))  # 16:9 is another picture
    assert not same_picture_size((8000, 6000), (4000, 3000))  # never scaled up
    assert same_picture_size(None, (4000, 3000))
    # A source Facebook keeps at its size matches only exactly: 48x32 is not 72x48.
    assert same_picture_size((72, 48), (72, 48))
    assert not same_picture_size((48, 32), (72, 48))


def test_a_rival_still_in_flight_makes_it_wait_rather_than_guess() -> None:
    result = match(image(1), [photo("p1")], [], [image(2, since=0.5)], rivals_in_flight_s=42)
    assert isinstance(result, Wait) and result.seconds == 42


def test_a_rival_with_another_caption_or_size_is_no_rival() -> None:
    rivals = [image(2, "Dunes"), image(3, size=(3000, 4000))]
    assert match(image(1), [photo("p1")], [], rivals, 42) == Found("p1")


def test_a_rival_never_attempted_is_no_rival() -> None:
    rival = Sent(2, "", (4000, 3000), None)
    assert match(image(1), [photo("p1")], [], [rival], 42) == Found("p1")


def test_ambiguous_after_the_window_with_equal_counts_pairs_in_a_stable_order() -> None:
    photos = [photo("p8", at=3), photo("p7", at=2)]
    one, two = image(1, since=0), image(2, since=1)
    assert match(one, photos, [], [two], 0) == Found("p7")
    assert match(two, photos, [], [one], 0) == Found("p8")
    # Whoever decides first, the other gets the other photo.
    assert match(two, photos, ["p7"], [], 0) == Found("p8")


def test_ambiguous_after_the_window_with_unequal_counts_fails_rather_than_guess() -> None:
    result = match(image(1), [photo("p1")], [], [image(2)], 0)
    assert isinstance(result, Unsure) and "cannot tell" in result.reason
    result = match(image(1), [photo("p1"), photo("p2")], [], [], 0)
    assert isinstance(result, Unsure)


def test_graph_times_are_read_as_naive_utc() -> None:
    assert parse_graph_time("2026-11-30T13:00:00+0100") == datetime(2026, 11, 30, 12, 0)
    assert parse_graph_time("garbage") is None and parse_graph_time(None) is None
