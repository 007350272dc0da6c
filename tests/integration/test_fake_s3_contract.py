"""FakeS3 (the unit tests' bucket) answers the calls the services make as S3 does (moto here):
the same fields, the same order, the same errors. A unit test on the fake proves only what
this contract lets it prove."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dev.images import png
from services.uploader import image_size
from shared.adapters import s3
from shared.adapters.fake_s3 import FakeS3


@pytest.fixture(params=["fake", "moto"])
def bucket(request: pytest.FixtureRequest) -> tuple[Any, str]:
    client = FakeS3() if request.param == "fake" else request.getfixturevalue("s3_client")
    name = f"contract-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def test_objects_are_listed_by_key_under_their_prefix(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    for key in ("users/1/b.png", "users/1/a/c.png", "users/10/x.png", "users/2/y.png"):
        client.put_object(Bucket=name, Key=key, Body=b"12345")
    found = s3.list_keys(client, name, "users/1/")
    assert [item["key"] for item in found] == ["users/1/a/c.png", "users/1/b.png"]
    assert all(item["size"] == 5 and "T" in item["last_modified"] for item in found)
    assert s3.list_keys(client, name, "users/3/") == []


def test_head_and_get_describe_the_object_alike(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    client.put_object(Bucket=name, Key="k.png", Body=b"abc")
    head = client.head_object(Bucket=name, Key="k.png")
    got = client.get_object(Bucket=name, Key="k.png")
    assert head["ETag"] == got["ETag"] == '"900150983cd24fb0d6963f7d28e17f72"'  # md5("abc")
    assert head["ContentLength"] == got["ContentLength"] == 3
    assert got["Body"].read() == b"abc"


@pytest.mark.parametrize(("call", "code"), [("head_object", "404"), ("get_object", "NoSuchKey")])
def test_a_missing_key_is_a_404(bucket: tuple[Any, str], call: str, code: str) -> None:
    client, name = bucket
    with pytest.raises(ClientError) as caught:
        getattr(client, call)(Bucket=name, Key="missing.png")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_ranged_get_reads_the_first_bytes_and_an_images_size_from_them(
    bucket: tuple[Any, str],
) -> None:
    client, name = bucket
    body = png(300, 200, seed=1, noise=True)
    client.put_object(Bucket=name, Key="u/big.png", Body=body, ContentType="image/png")
    assert len(body) > image_size.HEAD_BYTES
    got = client.get_object(Bucket=name, Key="u/big.png", Range="bytes=0-99")
    assert got["Body"].read() == body[:100] and got["ContentLength"] == 100
    assert image_size.read_size(client, name, "u/big.png") == (300, 200)
