"""Small JPEG previews of the bucket's images, made on demand and kept in a little memory cache.

The pages show a user's photos without ever handing the browser a bucket URL, and a grid of
10 MB originals would be slow on a phone: the API reads the object, shrinks it with Pillow and
answers with a few tens of KB.

Decoding is what costs memory, so it is bounded twice: an image whose header says it would
decode to more than `max_pixels` gets a placeholder without ever being decoded (a 482 KB PNG
can hold 12000 x 13000 pixels), and only `renders` previews are made at once; a request that
cannot start one within `wait_s` is told to come back (Busy).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image, ImageOps, UnidentifiedImageError

#: Longest side of a preview, in pixels: sharp in a ~240 px tile on a 2x screen.
SIZE = 480
#: Objects larger than this get no preview (Facebook takes at most 10 MB anyway).
MAX_SOURCE_BYTES = 30 * 1024 * 1024
#: The photo formats Pillow may open here (a camera's multi-picture JPEG opens as JPEG); the
#: other decoders it carries are never offered a user's file (docs/slow-clients.md).
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
Image.init()  # registers every format (WEBP and TIFF among them) before open() names them


def _placeholder(words: str) -> bytes:
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 90" width="480" height="360">'
        b'<rect width="120" height="90" fill="#e5e7eb"/>'
        b'<path d="M38 62l14-18 10 12 7-8 13 14z" fill="#9ca3af"/>'
        b'<circle cx="76" cy="34" r="6" fill="#9ca3af"/>'
        b'<text x="60" y="80" font-family="sans-serif" font-size="8" fill="#4b5563" '
        b'text-anchor="middle">' + words.encode() + b"</text></svg>"
    )


#: Not an image Pillow reads, or an object over MAX_SOURCE_BYTES.
PLACEHOLDER = _placeholder("no preview")
#: An image that would decode to more than the pixel limit: refused from its header.
TOO_LARGE = _placeholder("too large to preview")
#: No such object in the bucket: the 404's body, so the page shows why, not a broken image.
NOT_STORED = _placeholder("not in your storage")


@dataclass(frozen=True)
class Thumbnail:
    body: bytes
    content_type: str
    etag: str


class MissingObject(LookupError):
    """The bucket has no such object."""


class Busy(RuntimeError):
    """Every render slot stayed taken for the whole wait: ask again in a moment."""


class Thumbnails:
    """Previews of one bucket's objects, cached per process by key and the object's ETag."""

    def __init__(
        self,
        capacity: int = 512,
        renders: int = 2,
        wait_s: float = 5.0,
        max_pixels: int = 25_000_000,
    ) -> None:
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str], Thumbnail] = OrderedDict()
        self._lock = threading.Lock()
        self._renders = threading.BoundedSemaphore(renders)
        self._wait_s = wait_s
        self._max_pixels = max_pixels

    def head(self, s3: Any, bucket: str, key: str) -> tuple[str, int]:
        """The preview's ETag and the object's size, from a HEAD: cheap enough to answer a
        browser's If-None-Match without reading or shrinking the image again."""
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise MissingObject(key) from None
            raise
        # Names the object's version and the preview size: a changed object or a changed SIZE
        # never matches a browser's old copy.
        return f"{str(head['ETag']).strip(chr(34))}-{SIZE}", int(head["ContentLength"])

    def get(self, s3: Any, bucket: str, key: str, etag: str, size: int) -> Thumbnail:
        """The preview of the object version `etag` (as `head` gave it)."""
        cached = self._cached((key, etag))
        if cached is not None:
            return cached
        # The read too: it holds up to MAX_SOURCE_BYTES of the object in memory.
        if not self._renders.acquire(timeout=self._wait_s):
            raise Busy(key)
        try:
            thumbnail = self._make(s3, bucket, key, etag, size)
        finally:
            self._renders.release()
        with self._lock:
            self._cache[(key, etag)] = thumbnail
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return thumbnail

    def _cached(self, cache_key: tuple[str, str]) -> Thumbnail | None:
        with self._lock:
            found = self._cache.get(cache_key)
            if found is not None:
                self._cache.move_to_end(cache_key)
            return found

    def _make(self, s3: Any, bucket: str, key: str, etag: str, size: int) -> Thumbnail:
        if size > MAX_SOURCE_BYTES:
            return Thumbnail(PLACEHOLDER, "image/svg+xml", etag)
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            preview = shrink(original, max_pixels=self._max_pixels)
        except TooManyPixels:
            return Thumbnail(TOO_LARGE, "image/svg+xml", etag)
        if preview is None:
            return Thumbnail(PLACEHOLDER, "image/svg+xml", etag)
        return Thumbnail(preview, "image/jpeg", etag)


class TooManyPixels(Exception):
    """The image's header promises more pixels than a preview may decode."""


def shrink(original: bytes, size: int = SIZE, max_pixels: int = 25_000_000) -> bytes | None:
    """A JPEG no larger than size x size, or None if `original` is not an image Pillow reads.

    TooManyPixels, before any pixel is decoded, if it would decode to more than `max_pixels`.
    """
    try:
        # Reads the header only.
        with Image.open(io.BytesIO(original), formats=PHOTO_FORMATS) as source:
            source.draft("RGB", (size, size))  # JPEG decodes at a fraction of full size
            width, height = source.size  # what the decoder will allocate, after the draft
            if width * height > max_pixels:
                raise TooManyPixels(f"{width} x {height} pixels")
            upright = ImageOps.exif_transpose(source)
            upright.thumbnail((size, size))
            flat = _on_white(upright)
    except Image.DecompressionBombError as exc:  # over Pillow's own limit, refused at open
        raise TooManyPixels(str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=80, optimize=True, progressive=True)
    return out.getvalue()


def _on_white(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparent pixels become white rather than black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
