"""The demo and test PNGs: real images whose pixels follow their documented gradient, and
the decompression bomb, a valid black PNG."""

from __future__ import annotations

import io
import random
import zlib

import pytest
from PIL import Image

from dev import images
from dev.images import bomb_png, deflated_zeros, png


def test_a_gradient_png_decodes_to_its_formula_on_every_row() -> None:
    # 300 rows: blue wraps past 255 (it adds the row number), which a shifted table must too.
    width, height, seed = 7, 300, 3
    rng = random.Random(seed)
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    image = Image.open(io.BytesIO(png(width, height, seed=seed)))
    assert image.size == (width, height) and image.mode == "RGB"
    for y in range(height):
        for x in range(width):
            step = x * 255 // (width - 1)
            expected = ((step + tint[0]) % 256, (step + tint[1]) % 256, (step + tint[2] + y) % 256)
            assert image.getpixel((x, y)) == expected, (x, y)


def test_a_one_pixel_wide_png_decodes() -> None:
    assert Image.open(io.BytesIO(png(1, 3, seed=1))).size == (1, 3)


def test_deflated_zeros_chain_their_pieces_into_one_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "ZEROS_PIECE", 1000)  # 6 copies of the piece, then the rest
    for count in (0, 999, 1000, 6040):
        assert zlib.decompress(deflated_zeros(count)) == bytes(count)  # checks the Adler-32 too


def test_a_bomb_is_a_valid_black_png(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "ZEROS_PIECE", 1000)
    image = Image.open(io.BytesIO(bomb_png(50, 40)))
    assert image.size == (50, 40) and image.mode == "RGB"
    assert image.getextrema() == ((0, 0), (0, 0), (0, 0))
