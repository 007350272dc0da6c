"""When an image's dead letter is stale: the store says its image no longer needs it.

The album page's retry re-opens failed images from the store and leaves their dead letters in
the queue (reading the queue on a request would cost what the queue holds). From then on such
a letter is stale: its image was uploaded since, or was queued again and has a newer message on
its way (the letter follows an older attempt: `fencing.superseded`). Replaying a stale letter
sends nothing; the operator's tools say which letters are stale and purge them. A letter of a
failed image is not stale (replaying it re-opens the image), nor is one whose image has not ended
and has no newer message (left `uploading` or `queued` when the delivery limit dead-lettered
its message: replaying it sends the image a fresh message). Letters of other messages (an email,
a post, poison) are never judged stale here.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts import fencing
from shared.contracts.dead_letters import DeadLetter
from shared.store import ImageState, ImageView, Store


def why_stale(letter: DeadLetter, image: ImageView | None) -> str | None:
    """Why `letter` (an image's) is stale given its image as the store has it, or None."""
    if image is None:
        return "its image is no longer in the store"
    if image.state == ImageState.FAILED:
        return None
    if image.state == ImageState.UPLOADED:
        return "its image was uploaded since"
    if fencing.superseded(
        fencing.fence_of(letter.headers),
        image.attempts,
        image.state == ImageState.UPLOADING,
        image.attempt_fence,
    ):
        return f"its image was queued again since (now {image.state})"
    return None


def stale_letters(store: Store, letters: Iterable[DeadLetter]) -> dict[int, str]:
    """The stale ones among image letters, by position, with why (one read of the store)."""
    of_images = [letter for letter in letters if letter.image_id is not None]
    images = store.images([letter.image_id for letter in of_images if letter.image_id is not None])
    reasons = {
        letter.position: why_stale(letter, images.get(letter.image_id or 0)) for letter in of_images
    }
    return {position: reason for position, reason in reasons.items() if reason is not None}
