"""The settle an email tells, in the store's words.

A settled event travels through the broker, where whoever may publish could write one: an
email built from its text would carry their photo links and their "reasons" to an album's
owner. So the event only names the album, its settle and which of its images ended how; the
store owns the rest. An event that disagrees with the store (a settle that never happened,
images of another album, another object or photo) is dead-lettered with its reason and mails
nothing; what the email shows (names, photo links, reasons) is read from the store.
"""

from __future__ import annotations

from shared.contracts.messages import AlbumSettled, FailedImage, MessageMismatch, UploadedImage
from shared.store import AlbumView, ImageState, ImageView

#: A failed image re-opened since its settle: its reason then is no longer in the store.
RETRIED_SINCE = "it failed, and has been sent again since"


def stored_settle(event: AlbumSettled, album: AlbumView) -> AlbumSettled:
    """The event as the store tells it; raises MessageMismatch when it disagrees."""
    if event.settle_seq > album.settle_seq:
        raise MessageMismatch("album", "settle differs")
    images = {image.id: image for image in album.images}
    listed = [i.image_id for i in event.uploaded] + [i.image_id for i in event.failed]
    if sorted(listed) != sorted(images):
        raise MessageMismatch("album", "images differ")
    keys = [(i.image_id, i.key) for i in event.uploaded] + [
        (i.image_id, i.key) for i in event.failed
    ]
    if any(images[image_id].key != key for image_id, key in keys):
        raise MessageMismatch("album", "key differs")
    # An upload is final: a photo the store does not hold for that image is not ours.
    if any(
        images[i.image_id].state != ImageState.UPLOADED or images[i.image_id].photo_id != i.photo_id
        for i in event.uploaded
    ):
        raise MessageMismatch("album", "photo differs")
    return event.model_copy(
        update={
            "uploaded": [
                UploadedImage(
                    image_id=i.image_id,
                    key=images[i.image_id].key,
                    photo_id=images[i.image_id].photo_id or "",
                )
                for i in event.uploaded
            ],
            "failed": [
                FailedImage(
                    image_id=i.image_id,
                    key=images[i.image_id].key,
                    reason=_reason(images[i.image_id]),
                )
                for i in event.failed
            ],
        }
    )


def _reason(image: ImageView) -> str:
    if image.state == ImageState.FAILED:
        return image.error or "failed"
    return RETRIED_SINCE
