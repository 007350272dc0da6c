"""The album's rules: when it has ended, and what its settle says."""

from shared.policies.album_rules import ImageEnd, has_ended, settled_event, settled_state


def test_an_album_ends_once_every_image_is_uploaded_or_failed() -> None:
    assert has_ended("publishing", ["uploaded", "failed", "uploaded"])
    assert not has_ended("publishing", ["uploaded", "retrying"])
    assert not has_ended("publishing", ["uploading"])
    assert not has_ended("publishing", ["queued", "failed"])


def test_an_album_that_settled_does_not_end_again() -> None:
    assert not has_ended("done", ["uploaded"])
    assert not has_ended("done_with_failures", ["failed"])


def test_one_failed_image_makes_it_done_with_failures() -> None:
    assert settled_state([ImageEnd(1, "a", "uploaded", "p1")]) == "done"
    assert (
        settled_state(
            [ImageEnd(1, "a", "uploaded", "p1"), ImageEnd(2, "b", "failed", error="too big")]
        )
        == "done_with_failures"
    )


def test_the_settle_lists_each_photo_and_each_failure_with_its_reason() -> None:
    event = settled_event(
        "album-1",
        2,
        [
            ImageEnd(1, "a.png", "uploaded", "p1"),
            ImageEnd(2, "b.png", "failed", error="too big"),
            ImageEnd(3, "c.png", "failed"),
        ],
    )
    assert (event.album_id, event.settle_seq) == ("album-1", 2)
    assert [(i.image_id, i.key, i.photo_id) for i in event.uploaded] == [(1, "a.png", "p1")]
    assert [(i.image_id, i.reason) for i in event.failed] == [(2, "too big"), (3, "failed")]
