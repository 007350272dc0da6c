"""Real PNG images made from nothing but zlib: demo and test data of any size."""

from __future__ import annotations

import random
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _shifted(ramp: bytes, by: int) -> bytes:
    return ramp.translate(bytes((value + by) % 256 for value in range(256)))


def _gradient_row(ramp: bytes, tint: tuple[int, int, int], y: int) -> bytes:
    """Row `y` of the gradient: each channel the ramp plus its tint (blue plus y too), built
    by whole-row byte operations (a per-pixel loop took seconds for a 1600x1200 photo)."""
    row = bytearray(len(ramp) * 3)
    row[0::3] = _shifted(ramp, tint[0])
    row[1::3] = _shifted(ramp, tint[1])
    row[2::3] = _shifted(ramp, tint[2] + y)
    return bytes(row)


def png(width: int, height: int, seed: int = 0, noise: bool = False) -> bytes:
    """An RGB PNG: a gradient tinted by `seed`, or random noise (incompressible, so its size
    is about width * height * 3 bytes)."""
    rng = random.Random(seed)
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    ramp = bytes(x * 255 // max(width - 1, 1) for x in range(width))
    rows = []
    for y in range(height):
        pixels = rng.randbytes(width * 3) if noise else _gradient_row(ramp, tint, y)
        rows.append(b"\x00" + pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"".join(rows), 6)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(
        b"IEND", b"")


def png_of_size(approx_bytes: int, seed: int = 0) -> bytes:
    """A noise PNG of roughly `approx_bytes` (within a few KB)."""
    side = max(1, int((approx_bytes / 3) ** 0.5))
    return png(side, side, seed=seed, noise=True)


def bomb_png(width: int, height: int) -> bytes:
    """A black RGB PNG of width x height that is tiny on disk and huge once decoded: what a
    decompression bomb looks like (12000 x 13000 is about 2 MB here, 468 MB of pixels)."""
    deflate = zlib.compressobj(1)  # level 1: zeros still shrink ~200x, and quickly
    row = b"\x00" * (1 + width * 3)
    body = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(
        b"IEND", b"")
