"""A bucket for unit tests: objects in memory behind the few boto3 calls the services make.

A missing key raises botocore's own `ClientError` (NoSuchKey), as S3 does, so failures are
classified as in production.
"""

from __future__ import annotations

import io
from typing import Any

from botocore.exceptions import ClientError


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes,  # noqa: N803 - boto3's names
                   ContentType: str = "binary/octet-stream") -> dict[str, Any]:
        self.objects[(Bucket, Key)] = (Body, ContentType)
        return {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        try:
            body, content_type = self.objects[(Bucket, Key)]
        except KeyError:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no such key"}},
                              "GetObject") from None
        return {"Body": io.BytesIO(body), "ContentLength": len(body),
                "ContentType": content_type}
