"""An image's S3 object, opened once for its send: its pixel size is read from the first bytes
the send streams anyway, instead of a ranged GET of its own before it (one S3 request per
image, not two).

The size is read only when the store does not hold it yet (`image_size`: the header sits in
the first HEAD_BYTES); those bytes are kept and sent first, then the rest of the stream.
"""

from __future__ import annotations

from typing import Any

from .image_size import HEAD_BYTES, size_of


class Source:
    """The object's body as a stream for `GraphClient.upload_photo`, with its headers."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        obj = s3.get_object(Bucket=bucket, Key=key)
        self._body = obj["Body"]
        self.length = int(obj["ContentLength"])
        self.content_type: str | None = obj.get("ContentType")
        self._head = b""

    def size(self) -> tuple[int, int] | None:
        """(width, height) from the first bytes, which the stream then sends first; None
        when they do not tell. Read before any other byte of the stream."""
        wanted = min(HEAD_BYTES, self.length)
        parts: list[bytes] = []
        got = 0
        while got < wanted:  # a read may return fewer bytes than asked
            chunk = self._body.read(wanted - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self._head = b"".join(parts)
        return size_of(self._head)

    def read(self, size: int | None = -1) -> bytes:
        if not self._head:
            return bytes(self._body.read(size))
        if size is None or size < 0:
            rest: bytes = self._body.read()
            chunk, self._head = self._head + rest, b""
            return chunk
        chunk, self._head = self._head[:size], self._head[size:]
        return chunk

    def close(self) -> None:
        self._body.close()
