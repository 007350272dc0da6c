"""dev/s3_server.py, the S3 stand-in of `make run` and compose: moto's application from
`moto.server` (the module moto's own server mode builds it in) still answers S3's calls, and
waitress keeps boto3's connection open across them. A moto release that moves the application
fails here, not in the demo."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import waitress

from dev import s3_server

GETS = 20


@pytest.fixture
def endpoint() -> Iterator[str]:
    server: Any = waitress.create_server(
        s3_server.application(), host="127.0.0.1", port=0, threads=4
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)


def test_the_stand_in_answers_s3_on_one_kept_connection(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    bucket = f"keepalive-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k.png", Body=b"x" * 1000)
    opened: list[Any] = []
    real_connect = socket.socket.connect

    port = int(endpoint.rsplit(":", 1)[1])

    def connect(sock: socket.socket, address: Any) -> None:
        # Only the client's connections to the stand-in: another test's background thread
        # (a consumer reconnecting to its stopped node) may connect meanwhile.
        if isinstance(address, tuple) and address[1:2] == (port,):
            opened.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    bodies = [client.get_object(Bucket=bucket, Key="k.png")["Body"].read() for _ in range(GETS)]
    assert bodies == [b"x" * 1000] * GETS
    assert opened == [], f"{len(opened)} new connections for {GETS} GetObject calls"
