"""A source's pixel size from its first bytes: what recognises its photo later."""

from __future__ import annotations

import io

from PIL import Image

from dev.images import png
from services.uploader.image_size import HEAD_BYTES, size_of


def test_a_png_and_a_jpeg_tell_their_size_from_their_first_bytes() -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (640, 480)).save(jpeg, "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 60000)
    assert size_of(jpeg.getvalue()[:HEAD_BYTES]) == (640, 480)
    assert size_of(png(300, 200, seed=1, noise=True)[:HEAD_BYTES]) == (300, 200)


def test_bytes_that_are_no_image_tell_nothing() -> None:
    assert size_of(b"not an image at all") is None
    assert size_of(b"") is None
