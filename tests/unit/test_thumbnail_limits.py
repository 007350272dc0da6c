"""Thumbnails within bounds (issue 11): a decompression bomb is refused from its header, never
decoded; an image is judged by the pixels it would decode to; renders run a few at a time."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageFile

from dev.images import bomb_png, png
from shared.adapters.fake_s3 import FakeS3
from tests.unit.test_web import Env, make_env, sign_in

#: Pillow warns of the bomb when it opens it; refusing it is the app's part.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


class DecodeAttempted(Exception):
    """Pillow was asked for the pixels of an image it should never have decoded."""


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The issue's bomb: 12000 x 13000 RGB, ~0.5 MB of PNG and 468 MB of pixels."""
    return bomb_png(12000, 13000)


@pytest.fixture()
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image Pillow is asked to decode from here on (none is decoded)."""
    sizes: list[tuple[int, int]] = []

    def load(image: Any) -> Any:
        sizes.append(image.size)
        raise DecodeAttempted(image.size)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def signed_in(env: Env) -> FlaskClient:
    client = env.app.test_client()
    assert sign_in(client, env.token).status_code == 303
    return client


def test_a_decompression_bomb_is_refused_from_its_header(
    bomb: bytes, decoded: list[tuple[int, int]]
) -> None:
    env = make_env()
    key = f"{env.user.prefix}bomb.png"
    env.put(key, bomb)
    response = signed_in(env).get(f"/thumbnails/{key}")
    assert decoded == []
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert b"too large to preview" in response.data


def test_the_limit_counts_the_pixels_decoded_not_the_pixels_stored() -> None:
    env = make_env(api_thumbnail_max_pixels=1_000_000)
    jpeg = io.BytesIO()
    Image.new("RGB", (1600, 1200), "teal").save(jpeg, "JPEG")
    env.put(f"{env.user.prefix}big.jpg", jpeg.getvalue())
    env.put(f"{env.user.prefix}big.png", png(1600, 1200))
    client = signed_in(env)
    # A JPEG decodes at a fraction of its size (800 x 600 here): previewed.
    assert client.get(f"/thumbnails/{env.user.prefix}big.jpg").mimetype == "image/jpeg"
    # A PNG decodes whole: 1.92 million pixels are over the limit.
    refused = client.get(f"/thumbnails/{env.user.prefix}big.png")
    assert refused.mimetype == "image/svg+xml" and b"too large to preview" in refused.data


def test_formats_other_than_photos_are_not_decoded(decoded: list[tuple[int, int]]) -> None:
    env = make_env()
    key = f"{env.user.prefix}raw.ppm"
    env.put(key, b"P6 2 2 255\n" + bytes(12))  # a real (tiny) image, of a format Pillow reads
    response = signed_in(env).get(f"/thumbnails/{key}")
    assert decoded == []
    assert response.mimetype == "image/svg+xml" and b"no preview" in response.data


class GatedS3(FakeS3):
    """Holds the first object read until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def get_object(
        self,
        Bucket: str,
        Key: str,  # noqa: N803 - boto3's names
        Range: str | None = None,
    ) -> dict[str, Any]:  # noqa: N803
        if not self.reading.is_set():
            self.reading.set()
            self.go_on.wait(2)
        return super().get_object(Bucket=Bucket, Key=Key, Range=Range)


def test_renders_beyond_the_limit_get_503_with_retry_after() -> None:
    s3 = GatedS3()
    env = make_env(s3, api_thumbnail_renders=1, api_thumbnail_wait_s=0.01)
    first, second = f"{env.user.prefix}a.png", f"{env.user.prefix}b.png"
    env.put(first, png(64, 48))
    env.put(second, png(64, 48, seed=1))
    answers: list[Any] = []
    rendering = threading.Thread(
        target=lambda: answers.append(signed_in(env).get(f"/thumbnails/{first}"))
    )
    rendering.start()
    try:
        assert s3.reading.wait(2)
        busy = signed_in(env).get(f"/thumbnails/{second}")
        assert busy.status_code == 503, busy.status_code
        assert int(busy.headers["Retry-After"]) >= 1
        assert "thumbnail" in busy.get_json()["error"]
    finally:
        s3.go_on.set()
        rendering.join(2)
    assert answers and answers[0].status_code == 200
    # The render done, the next one goes ahead.
    assert signed_in(env).get(f"/thumbnails/{second}").mimetype == "image/jpeg"
