"""The bucket, reached through boto3 exactly as in production (endpoint from S3_ENDPOINT_URL,
keys and region from the service's settings)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from shared.config.settings import CommonSettings


def make_client(settings: CommonSettings) -> Any:
    # boto3's standard mode retries 5xx and SlowDown on the request itself; a stream cut
    # halfway is the uploader's to retry as a whole.
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,
    )
    return _session(settings).client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def _session(settings: CommonSettings) -> boto3.session.Session:
    """A session of the settings' own, not boto3's process-wide default: the keys and region
    as the service read them (`.env` included); what they leave empty, boto3's chain finds."""
    return boto3.session.Session(
        aws_access_key_id=settings.aws_access_key_id or None,
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value() or None,
        aws_session_token=settings.aws_session_token.get_secret_value() or None,
        region_name=settings.aws_region or None,
    )


def list_keys(client: Any, bucket: str, prefix: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The objects under a prefix: key, size and last modified time."""
    found: list[dict[str, Any]] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found.append(
                {
                    "key": item["Key"],
                    "size": item["Size"],
                    "last_modified": item["LastModified"].isoformat(),
                }
            )
            if len(found) >= limit:
                return found
    return found
