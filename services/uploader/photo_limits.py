"""What Facebook takes as a photo, judged from an S3 object's metadata before the first byte.

Facebook refuses a photo over 10 MB and any file that is not JPEG, PNG, GIF, BMP or TIFF
(docs/facebook-photo-limits.md, with Meta's pages). Streaming such a file costs its whole size
and ends in a refusal anyway, so the uploader checks the object's size and type first and fails
the image at once with a reason that says which limit and what to do. Plain functions, no I/O.
"""

from __future__ import annotations

import posixpath

#: Facebook's limit for one photo: "must not exceed 10 MB" (the Graph simulator's too).
MAX_PHOTO_BYTES = 10 * 1024 * 1024
_MB = 1024 * 1024

#: The formats Facebook takes, by content type and by file extension.
_ACCEPTED_TYPES = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/x-bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
    "image/tiff-fx": "TIFF",
}
_ACCEPTED_EXTENSIONS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".dib": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: Content types that say nothing about the file (S3's default is binary/octet-stream): the
#: key's extension decides instead.
_GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/x-download",
        "application/unknown",
    }
)
#: How the reason names formats people meet; others are named by their subtype or extension.
_FORMAT_NAMES = {
    "webp": "WebP",
    "heic": "HEIC",
    "heif": "HEIF",
    "avif": "AVIF",
    "svg+xml": "SVG",
    "svg": "SVG",
    "jxl": "JPEG XL",
    "x-icon": "ICO",
    "vnd.microsoft.icon": "ICO",
    "ico": "ICO",
    "x-adobe-dng": "DNG",
    "dng": "DNG",
    "pdf": "PDF",
    "mp4": "MP4",
    "quicktime": "QuickTime",
    "mov": "QuickTime",
}
_ACCEPTED_LIST = "JPEG, PNG, GIF, BMP or TIFF"


class OverPhotoLimit(Exception):
    """The object is not something Facebook takes as a photo; `reason` says why and what to do.
    Sending it again would be refused again: the failure is permanent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def refusal(size: int | None, content_type: str | None, key: str) -> str | None:
    """Why Facebook would refuse this object as a photo, or None if it may be sent.

    `content_type` decides the format unless it is missing or generic; then the key's
    extension does. An object neither names (no extension, a generic type) is let through:
    Facebook (and the simulator) judge its bytes."""
    if size is not None and size > MAX_PHOTO_BYTES:
        return (
            f"{size / _MB:.1f} MB is over Facebook's 10 MB limit for a photo: resize it and retry"
        )
    unaccepted = _unaccepted_format(content_type, key)
    if unaccepted is not None:
        return (
            f"{unaccepted} is not a format Facebook takes for photos ({_ACCEPTED_LIST}): "
            "convert it and retry"
        )
    return None


def check(size: int | None, content_type: str | None, key: str) -> None:
    """Raise `OverPhotoLimit` if Facebook would refuse the object (see `refusal`)."""
    reason = refusal(size, content_type, key)
    if reason is not None:
        raise OverPhotoLimit(reason)


def _unaccepted_format(content_type: str | None, key: str) -> str | None:
    """The name of the object's format if Facebook does not take it, else None."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _GENERIC_TYPES:
        if media_type in _ACCEPTED_TYPES:
            return None
        kind, _, subtype = media_type.partition("/")
        if subtype in _FORMAT_NAMES:
            return _FORMAT_NAMES[subtype]
        return subtype.removeprefix("x-").upper() if kind == "image" and subtype else media_type
    extension = posixpath.splitext(key)[1].lower()
    if not extension or extension in _ACCEPTED_EXTENSIONS:
        return None
    return _FORMAT_NAMES.get(extension[1:], extension[1:].upper())
