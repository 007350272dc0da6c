"""Real PNG images made from nothing but zlib: demo and test data of any size."""

from __future__ import annotations

import random
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(width: int, height: int, seed: int = 0, noise: bool = False) -> bytes:
    """An RGB PNG: a gradient tinted by `seed`, or random noise (incompressible, so its size
    is about width * height * 3 bytes)."""
    rng = random.Random(seed)
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    if noise:
        rows = [b"\x00" + rng.randbytes(width * 3) for _ in range(height)]
    else:
        rows = _gradient_rows(width, height, tint)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"".join(rows), 6)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def _gradient_rows(width: int, height: int, tint: tuple[int, int, int]) -> list[bytes]:
    """Each row's filter byte and pixels: channel c of pixel (x, y) is
    (x * 255 // (width - 1) + tint[c] + (y if c is blue)) % 256.

    Red and green are the same on every row and blue is one row shifted by y, so each row is
    three channel strips interleaved by slice assignment: a pixel-by-pixel generator took
    0.7 s per 640x480 image, which `make run`'s banner waited for twenty times.
    """
    ramp = [x * 255 // max(width - 1, 1) for x in range(width)]
    red, green, blue = (bytes((step + shade) % 256 for step in ramp) for shade in tint)
    row = bytearray(1 + width * 3)  # row[0] stays 0: PNG's "no filter" byte
    row[1::3], row[2::3] = red, green
    rows = []
    for y in range(height):
        row[3::3] = blue.translate(_SHIFTS[y % 256])
        rows.append(bytes(row))
    return rows


#: _SHIFTS[n] maps each byte b to (b + n) % 256 (bytes.translate's table).
_SHIFTS = [bytes((b + n) % 256 for b in range(256)) for n in range(256)]


def png_of_size(approx_bytes: int, seed: int = 0) -> bytes:
    """A noise PNG of roughly `approx_bytes` (within a few KB)."""
    side = max(1, int((approx_bytes / 3) ** 0.5))
    return png(side, side, seed=seed, noise=True)


def bomb_png(width: int, height: int) -> bytes:
    """A black RGB PNG of width x height that is tiny on disk and huge once decoded: what a
    decompression bomb looks like (12000 x 13000 is about 0.5 MB here, 468 MB of pixels)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # Every byte is zero: each row's filter byte ("none") and its black pixels.
    body = deflated_zeros(height * (1 + width * 3))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


#: The zeros `deflated_zeros` compresses once and repeats.
ZEROS_PIECE = 1 << 20


def deflated_zeros(count: int) -> bytes:
    """A zlib stream of `count` zero bytes, without compressing them all (468 MB took a second):
    one piece is deflated and repeated. Each copy ends in a full flush, on a byte boundary and
    with the history reset, so every copy is the same bytes and they chain into one stream.
    The Adler-32 of zeros is 1 in its low half and the count modulo 65521 in its high half."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the zlib frame is ours
    piece = deflate.compress(bytes(ZEROS_PIECE)) + deflate.flush(zlib.Z_FULL_FLUSH)
    pieces, rest = divmod(count, ZEROS_PIECE)
    blocks = piece * pieces + deflate.compress(bytes(rest)) + deflate.flush()
    adler = (count % 65521) << 16 | 1
    return b"\x78\xda" + blocks + struct.pack(">I", adler)  # 0x78DA: deflate, level 9
