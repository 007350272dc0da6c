"""A bucket for unit tests: objects in memory behind the few boto3 calls the services make.

A missing key raises botocore's own `ClientError` (NoSuchKey, or a bare 404 for a HEAD), with
the HTTP status S3 answers, so failures are classified as in production. Keys are listed in
S3's order (by key) and in pages, as `list_objects_v2` gives them. The integration test
`tests/integration/test_fake_s3_contract.py` holds it to moto's answers for the same calls.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

#: Keys per `list_objects_v2` page, S3's default.
PAGE_SIZE = 1000


def _etag(body: bytes) -> str:
    # A single-part upload's ETag is its MD5, quoted.
    return f'"{hashlib.md5(body).hexdigest()}"'


def _missing(code: str, message: str, operation: str) -> ClientError:
    # With the metadata S3 sends in every answer (botocore's types ask for all of it).
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": 404,
                "RequestId": "",
                "HostId": "",
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        operation,
    )


class FakeS3:
    def __init__(self) -> None:
        #: (bucket, key) -> (body, content type); a test may read or fill it directly.
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._modified: dict[tuple[str, str], datetime] = {}

    def create_bucket(self, Bucket: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        # Buckets are implied by their objects; creating one only answers as S3 does.
        return {"Location": f"/{Bucket}"}

    def put_object(
        self,
        Bucket: str,
        Key: str,
        Body: bytes,  # noqa: N803
        ContentType: str = "binary/octet-stream",
    ) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = (Body, ContentType)
        self._modified[(Bucket, Key)] = _now()
        return {"ETag": _etag(Body)}

    def get_object(
        self,
        Bucket: str,
        Key: str,  # noqa: N803
        Range: str | None = None,
    ) -> dict[str, Any]:  # noqa: N803
        body, content_type = self._find(Bucket, Key, "GetObject")
        described = self._described(Bucket, Key, body, content_type)
        if Range is not None:  # bytes=FIRST-LAST, as the uploader asks for an image's head
            first, last = (int(n) for n in Range.removeprefix("bytes=").split("-"))
            body = body[first : last + 1]
            described["ContentLength"] = len(body)
        return {"Body": io.BytesIO(body), **described}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        body, content_type = self._find(Bucket, Key, "HeadObject")
        return self._described(Bucket, Key, body, content_type)

    def get_paginator(self, operation: str) -> _ListPaginator:
        if operation != "list_objects_v2":
            raise NotImplementedError(f"FakeS3 pages only list_objects_v2, not {operation}")
        return _ListPaginator(self)

    def _find(self, bucket: str, key: str, operation: str) -> tuple[bytes, str]:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            if operation == "HeadObject":  # a HEAD has no body to name the error in
                raise _missing("404", "Not Found", operation) from None
            raise _missing("NoSuchKey", "The specified key does not exist.", operation) from None

    def _described(self, bucket: str, key: str, body: bytes, content_type: str) -> dict[str, Any]:
        return {
            "ContentLength": len(body),
            "ContentType": content_type,
            "ETag": _etag(body),
            "LastModified": self._modified.setdefault((bucket, key), _now()),
        }

    def _listing(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        keys = sorted(
            key
            for (in_bucket, key) in self.objects
            if in_bucket == bucket and key.startswith(prefix)
        )
        return [
            {
                "Key": key,
                "Size": len(self.objects[(bucket, key)][0]),
                "ETag": _etag(self.objects[(bucket, key)][0]),
                "LastModified": self._modified.setdefault((bucket, key), _now()),
            }
            for key in keys
        ]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)  # S3 keeps whole seconds


class _ListPaginator:
    def __init__(self, s3: FakeS3) -> None:
        self._s3 = s3

    def paginate(self, Bucket: str, Prefix: str = "") -> Iterator[dict[str, Any]]:  # noqa: N803
        listing = self._s3._listing(Bucket, Prefix)
        for start in range(0, max(len(listing), 1), PAGE_SIZE):
            page = listing[start : start + PAGE_SIZE]
            answer: dict[str, Any] = {
                "KeyCount": len(page),
                "Prefix": Prefix,
                "IsTruncated": start + PAGE_SIZE < len(listing),
            }
            if page:  # S3 leaves Contents out of an empty page
                answer["Contents"] = page
            yield answer
