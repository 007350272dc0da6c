"""The stand-ins, in-process on free loopback ports: the Graph simulator, moto's S3, the mail
catcher, and a broker node that never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import boto3
import pika
import pytest
import requests
from moto.server import ThreadedMotoServer
from pika.adapters.utils import io_services_utils
from werkzeug.serving import make_server

from dev.graph_simulator import PageSettings, create_app
from dev.mail_catcher import MailCatcher
from dev.ports import free_port
from shared.contracts import topology

from .helpers import PAGE_ID, TOKEN


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    # Album creation allowed: these tests are about creating albums (the refusal and its
    # fallback: tests/unit/test_destinations.py and tests/e2e/test_destinations.py).
    page = PageSettings(refuse_album_creation=False)
    server = make_server("127.0.0.1", 0, create_app(PAGE_ID, TOKEN, page=page), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sim(simulator_url: str) -> Iterator[str]:
    """The simulator, with no photos, albums or faults before and after the test."""
    requests.post(f"{simulator_url}/_sim/reset", timeout=5).raise_for_status()
    yield simulator_url
    requests.post(f"{simulator_url}/_sim/reset", timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    mail_catcher = MailCatcher("127.0.0.1", free_port(), free_port())
    mail_catcher.start()
    yield mail_catcher
    mail_catcher.stop()


@pytest.fixture()
def work_queue(amqp_url: str) -> Iterator[str]:
    """The uploader's work queue, declared and empty before and after the test."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    topology.declare(connection.channel(), (1,))
    connection.channel().queue_purge(topology.IMAGE_UPLOADS.name)
    yield topology.IMAGE_UPLOADS.name
    connection.channel().queue_purge(topology.IMAGE_UPLOADS.name)
    connection.close()


@pytest.fixture(params=["amqp", "amqps"])
def silent_node(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[socket.socket]]]:
    """A node that takes the TCP connection and never says a word of AMQP or TLS (a broker
    hung in its start-up): its URL, and the connections it took."""
    taken: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.1)

        def take(stop: threading.Event) -> None:
            while not stop.is_set():
                with suppress(TimeoutError):
                    taken.append(server.accept()[0])

        stop = threading.Event()
        taker = threading.Thread(target=take, args=(stop,), daemon=True)
        taker.start()
        yield f"{request.param}://guest:guest@127.0.0.1:{server.getsockname()[1]}/%2F", taken
        stop.set()
        taker.join()
    for connection in taken:
        connection.close()


@pytest.fixture()
def link_up_fails_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """pika's first stream link-up raises ValueError, as it did in CI when a node reset the
    connection between the TCP connect and the link-up (getpeername failed); the later ones
    go through. The link-ups tried, counted. Name it after the fixtures that connect to set
    up (they are made first), or one of them meets the fault."""
    link_up = io_services_utils._AsyncStreamConnector.__init__
    tried: list[int] = []

    def fails_once(self: Any, *args: Any, **kwargs: Any) -> None:
        tried.append(1)
        if len(tried) == 1:
            raise ValueError("Expected connected socket, but getpeername() failed (a test)")
        link_up(self, *args, **kwargs)

    monkeypatch.setattr(io_services_utils._AsyncStreamConnector, "__init__", fails_once)
    return tried
