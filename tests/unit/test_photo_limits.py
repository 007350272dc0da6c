"""Facebook's photo limits, judged from an object's size, content type and key."""

from __future__ import annotations

import pytest

from services.uploader import failures
from services.uploader.photo_limits import MAX_PHOTO_BYTES, OverPhotoLimit, check, refusal
from shared.policies.retry_policy import FailureKind
from tests.present import present

MB = 1024 * 1024
TOO_BIG_12 = "12.0 MB is over Facebook's 10 MB limit for a photo: resize it and retry"
WEBP = (
    "WebP is not a format Facebook takes for photos (JPEG, PNG, GIF, BMP or TIFF): "
    "convert it and retry"
)


def test_a_12_mb_jpeg_is_refused_naming_the_limit_and_what_to_do() -> None:
    assert refusal(12 * MB, "image/jpeg", "u/1/big.jpg") == TOO_BIG_12


def test_exactly_10_mb_is_taken_one_byte_more_is_not() -> None:
    assert refusal(MAX_PHOTO_BYTES, "image/jpeg", "a.jpg") is None
    assert refusal(MAX_PHOTO_BYTES + 1, "image/jpeg", "a.jpg") == (
        "10.0 MB is over Facebook's 10 MB limit for a photo: resize it and retry"
    )


def test_a_webp_is_refused_by_its_content_type() -> None:
    assert refusal(50_000, "image/webp", "u/1/pic.webp") == WEBP


@pytest.mark.parametrize(
    "content_type",
    [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "IMAGE/PNG; charset=binary",
    ],
)
def test_the_formats_facebook_takes_pass(content_type: str) -> None:
    assert refusal(1000, content_type, "u/1/photo") is None


@pytest.mark.parametrize(
    "content_type", [None, "", "binary/octet-stream", "application/octet-stream"]
)
def test_a_missing_or_generic_type_falls_back_to_the_extension(content_type: str | None) -> None:
    assert refusal(1000, content_type, "u/1/pic.WEBP") == WEBP
    assert present(refusal(1000, content_type, "u/1/pic.heic")).startswith("HEIC is not a format")
    assert refusal(1000, content_type, "u/1/scan.TIFF") is None
    assert refusal(1000, content_type, "u/1/photo.jpeg") is None


def test_the_content_type_wins_over_the_extension() -> None:
    assert refusal(1000, "image/png", "u/1/renamed.webp") is None
    assert refusal(1000, "image/webp", "u/1/renamed.jpg") == WEBP


def test_what_names_no_format_is_let_through_for_facebook_to_judge() -> None:
    assert refusal(1000, None, "u/1/photo") is None
    assert refusal(1000, "binary/octet-stream", "u/1/photo") is None


def test_other_types_are_named_plainly() -> None:
    assert present(refusal(1000, "image/x-portable-pixmap", "a")).startswith(
        "PORTABLE-PIXMAP is not"
    )
    assert present(refusal(1000, "text/plain", "a.txt")).startswith("text/plain is not a format")


def test_size_is_reported_before_format() -> None:
    assert refusal(12 * MB, "image/webp", "a.webp") == TOO_BIG_12


def test_check_raises_a_permanent_failure_with_the_reason() -> None:
    with pytest.raises(OverPhotoLimit) as refused:
        check(1000, "image/webp", "a.webp")
    failure = failures.classify(refused.value)
    assert (failure.kind, failure.reason, failure.code) == (FailureKind.PERMANENT, WEBP, None)
    check(1000, "image/png", "a.png")  # raises nothing
