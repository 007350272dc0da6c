"""When an image's dead letter is stale (shared/policies/stale_letters.py), decided from the
letter's fencing number and its image as the store has it."""

from __future__ import annotations

import pytest

from shared.contracts import dead_letters, messages, topology
from shared.contracts.dead_letters import DeadLetter
from shared.contracts.fencing import FENCE_HEADER
from shared.policies.stale_letters import why_stale
from shared.store import ImageState, ImageView


def letter(fence: int | None) -> DeadLetter:
    """The letter of image 7's delivery carrying `fence`, as the uploader writes it."""
    body = messages.encode(messages.ImageUploadRequested(album_id="a", image_id=7, key="k"))
    headers = {} if fence is None else {FENCE_HEADER: fence}
    out = dead_letters.dead_letter(topology.IMAGE_UPLOADS, body, headers, "refused", 324, 1)
    return DeadLetter(1, out.body, out.headers)


def image(state: str, attempts: int, attempt_fence: int | None) -> ImageView:
    return ImageView(7, "k", state, attempts, None, None, None, attempt_fence)


def test_the_letter_of_a_failed_image_is_not_stale() -> None:
    # Attempt 1 (started by the message with fence 0) failed for good.
    assert why_stale(letter(0), image(ImageState.FAILED, 1, 0)) is None


def test_the_letter_of_an_image_uploaded_since_is_stale() -> None:
    assert why_stale(letter(0), image(ImageState.UPLOADED, 2, 1)) == "its image was uploaded since"


def test_the_letter_of_an_image_no_longer_in_the_store_is_stale() -> None:
    assert why_stale(letter(0), None) == "its image is no longer in the store"


@pytest.mark.parametrize(
    "state, attempts, attempt_fence",
    [
        (ImageState.QUEUED, 1, 0),  # re-opened: its fresh message (fence 1) waits in the work queue
        (ImageState.UPLOADING, 2, 1),  # that message started attempt 2
        (ImageState.RETRYING, 2, 1),  # attempt 2's copy waits in a retry tier
    ],
)
def test_the_letter_of_an_image_queued_again_is_stale(
    state: str, attempts: int, attempt_fence: int
) -> None:
    reason = why_stale(letter(0), image(state, attempts, attempt_fence))
    assert reason == f"its image was queued again since (now {state})"


@pytest.mark.parametrize(
    "fence, state, attempts, attempt_fence",
    [
        (
            0,
            ImageState.UPLOADING,
            1,
            0,
        ),  # the delivery limit dead-lettered the message of attempt 1
        (0, ImageState.QUEUED, 0, None),  # ... of a message that never started an attempt
        (1, ImageState.RETRYING, 1, 0),  # ... of attempt 1's retry copy
        (
            None,
            ImageState.UPLOADING,
            1,
            None,
        ),  # a letter written before fencing: never judged by it
    ],
)
def test_the_only_message_of_an_unfinished_image_is_not_stale(
    fence: int | None, state: str, attempts: int, attempt_fence: int | None
) -> None:
    assert why_stale(letter(fence), image(state, attempts, attempt_fence)) is None
