"""Real PNG images made from nothing but zlib: demo and test data of any size."""

from __future__ import annotations

import random
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int, height: int, seed: int = 0, noise: bool = False) -> bytes:
    """An RGB PNG: a gradient tinted by `seed`, or random noise (incompressible, so its size
    is about width * height * 3 bytes)."""
    rng = random.Random(seed)
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    rows = []
    for y in range(height):
        if noise:
            pixels = rng.randbytes(width * 3)
        else:
            pixels = bytes((x * 255 // max(width - 1, 1) + tint[c] + (y if c == 2 else 0)) % 256
                           for x in range(width) for c in range(3))
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
