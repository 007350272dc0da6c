"""The in-memory bucket's own behaviour (its agreement with S3 is the integration contract)."""

from __future__ import annotations

import pytest

from shared.adapters import fake_s3, s3
from shared.adapters.fake_s3 import FakeS3


def test_a_long_listing_comes_in_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_s3, "PAGE_SIZE", 2)
    bucket = FakeS3()
    for n in range(5):
        bucket.put_object(Bucket="b", Key=f"p/{n}", Body=b"x")
    pages = list(bucket.get_paginator("list_objects_v2").paginate(Bucket="b", Prefix="p/"))
    assert [page["KeyCount"] for page in pages] == [2, 2, 1]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    assert len(s3.list_keys(bucket, "b", "p/", limit=3)) == 3


def test_an_object_written_straight_into_the_dict_is_described_too() -> None:
    bucket = FakeS3()
    bucket.objects[("b", "k")] = (b"abc", "image/png")
    assert bucket.head_object(Bucket="b", Key="k")["ContentType"] == "image/png"
    assert [item["key"] for item in s3.list_keys(bucket, "b", "")] == ["k"]


def test_only_the_listing_is_paged() -> None:
    with pytest.raises(NotImplementedError):
        FakeS3().get_paginator("list_buckets")
