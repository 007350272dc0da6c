"""A source image's pixel size, from the first bytes of its S3 object.

The size is what recognises, with the caption and the time, a photo an uncertain attempt sent
(`photo_match`): it is read before the first send, from the first bytes of the send's own
stream (`source.Source`; `read_size` reads them with a ranged GET of their own). Image headers
sit at the start of the file (a JPEG's frame header after its EXIF block, which is at most
64 KB), so the whole object is never held. An image whose size cannot be read this way is
matched without it.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

#: How much of the object is read: the largest EXIF block, plus the frame header after it.
HEAD_BYTES = 64 * 1024 + 1024


def read_size(s3: Any, bucket: str, key: str) -> tuple[int, int] | None:
    """(width, height) of the object's image, or None when its first bytes do not tell."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEAD_BYTES - 1}")
        try:
            head = obj["Body"].read(HEAD_BYTES)
        finally:
            obj["Body"].close()
    except Exception as exc:  # the send that follows meets the same fault and classifies it
        log.info("could not read the first bytes of %s: %s", key, exc)
        return None
    return size_of(head)


def size_of(head: bytes) -> tuple[int, int] | None:
    """The pixel size in an image's first bytes; Pillow parses the header, decodes nothing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge size is a fact here, not a bomb
            with Image.open(io.BytesIO(head)) as image:
                width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return (width, height) if width > 0 and height > 0 else None
