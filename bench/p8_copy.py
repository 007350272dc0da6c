"""P8's reference: the plain streaming copy, as a process of its own (its CPU is its own).

`python -m bench.p8_copy` reads a JSON job on stdin ({"s3": endpoint, "bucket", "keys",
"graph": base URL, "version", "page_id", "token", "concurrency"}), copies every object from S3
to the Graph stand-in with `concurrency` threads: boto3 `get_object`, its body streamed into a
multipart POST by requests (requests-toolbelt's encoder, which streams what it is given), one
kept-alive session per thread; and prints {"elapsed_s", "cpu_s", "bytes"} for the copy alone
(imports and clients made before the clock starts, as a warm uploader has them).
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import requests
from botocore.config import Config
from requests_toolbelt.multipart.encoder import MultipartEncoder


class _Sized:
    """The S3 body with the length the encoder needs to stream it (no seek, no len())."""

    def __init__(self, body: Any, length: int) -> None:
        self._body = body
        self.len = length

    def read(self, size: int = -1) -> bytes:
        wanted = self.len if size is None or size < 0 else min(size, self.len)
        chunk: bytes = self._body.read(wanted)
        self.len -= len(chunk)
        return chunk


def main() -> int:
    job = json.load(sys.stdin)
    s3 = boto3.client(
        "s3",
        endpoint_url=job["s3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=job["concurrency"]),
    )
    url = f"{job['graph']}/{job['version']}/{job['page_id']}/photos"
    local = threading.local()

    def copy(key: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        obj = s3.get_object(Bucket=job["bucket"], Key=key)
        length = int(obj["ContentLength"])
        encoder = MultipartEncoder(
            fields=[
                ("published", "false"),
                ("source", (key.rsplit("/", 1)[-1], _Sized(obj["Body"], length), "image/png")),
            ]
        )
        response = local.session.post(
            url,
            data=encoder,
            timeout=120,
            headers={
                "Content-Type": encoder.content_type,
                "Authorization": f"Bearer {job['token']}",
            },
        )
        response.raise_for_status()
        return length

    started, cpu = time.perf_counter(), _cpu()
    with ThreadPoolExecutor(job["concurrency"]) as pool:
        moved = sum(pool.map(copy, job["keys"]))
    print(
        json.dumps(
            {"elapsed_s": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "bytes": moved}
        )
    )
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
