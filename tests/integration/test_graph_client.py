"""GraphClient against the Graph simulator, run in-process on a free loopback port.

Covers streaming uploads (checked by the sha256 the simulator records), paging, the error
bodies and headers the client parses, and how `classify` reads the resulting errors.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import pytest
import requests
from botocore.exceptions import IncompleteReadError
from moto.server import ThreadedMotoServer

from services.uploader.failures import classify, may_have_landed
from shared.adapters.graph_client import (
    GraphClient,
    GraphError,
    GraphNetworkError,
    SourceTruncatedError,
)
from shared.policies.retry_policy import FailureKind

from .helpers import PAGE_ID, TOKEN, VERSION, set_faults, sim_photos, wait_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
T = TypeVar("T")

# A complete 1x1 GIF.
TINY_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def png_bytes(width: int, height: int, *, seed: int = 0, level: int = 9) -> bytes:
    """A valid RGB PNG of noise; level 0 keeps it as big as its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    noise = random.Random(seed)
    rows = b"".join(b"\x00" + noise.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, level))
        + chunk(b"IEND", b"")
    )


class OneWayStream:
    """Like botocore's StreamingBody: only read(n); no seek, no len, no fileno."""

    def __init__(self, data: bytes, max_read: int = MIB) -> None:
        self._data = data
        self._pos = 0
        self.max_read = max_read
        self.read_sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        assert 0 < size <= self.max_read, f"read({size}) asks for more than one bounded chunk"
        self.read_sizes.append(size)
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def seekable(self) -> bool:
        return False


class GeneratedImageStream:
    """`total` bytes of a PNG-signed body made up on the fly, hashed as they are read.

    Nothing holds the whole body, and every read must ask for a bounded amount.
    """

    def __init__(self, total: int, max_read: int = MIB) -> None:
        self._left = total
        self._signature = b"\x89PNG\r\n\x1a\n"
        self._noise = random.Random(7)
        self.max_read = max_read
        self.sha256 = hashlib.sha256()
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        assert 0 < size <= self.max_read, f"read({size}) asks for more than one bounded chunk"
        self.reads += 1
        size = min(size, self._left)
        head, self._signature = self._signature[:size], self._signature[size:]
        chunk = head + self._noise.randbytes(size - len(head))
        self._left -= len(chunk)
        self.sha256.update(chunk)
        return chunk


class FailingStream:
    """Serves `good` bytes, then fails the way a broken S3 download does."""

    def __init__(self, good: bytes, expected: int) -> None:
        self._good = good
        self._expected = expected
        self._sent = False

    def read(self, size: int = -1) -> bytes:
        if not self._sent:
            self._sent = True
            return self._good[:size]
        raise IncompleteReadError(actual_bytes=len(self._good), expected_bytes=self._expected)


class RecordingSession(requests.Session):
    """A requests session that remembers every call it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append((method, url, dict(kwargs.get("headers") or {})))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def client(sim: str) -> Iterator[GraphClient]:
    graph = GraphClient(sim, VERSION, PAGE_ID, TOKEN)
    yield graph
    graph.close()


@pytest.fixture
def album_id(client: GraphClient) -> str:
    return client.create_album("Summer 2026", "Photos from the trip")


def upload_bytes(
    client: GraphClient, album_id: str, data: bytes, filename: str = "photo.png", **kwargs: Any
) -> str:
    return client.upload_photo(
        album_id,
        OneWayStream(data),  # type: ignore[arg-type]
        len(data),
        filename,
        kwargs.get("content_type", "image/png"),
        kwargs.get("caption", "a caption"),
    )


def expect_graph_error(call: Callable[[], object]) -> GraphError:
    with pytest.raises(GraphError) as caught:
        call()
    return caught.value


# Uploads ------------------------------------------------------------------------------------


def test_streamed_png_arrives_intact(sim: str, client: GraphClient, album_id: str) -> None:
    image = png_bytes(64, 48)
    stream = OneWayStream(image)
    caption = "Sunset at the pier 🌅"

    photo_id = client.upload_photo(
        album_id,
        stream,  # type: ignore[arg-type]
        len(image),
        "sunset.png",
        "image/png",
        caption,
    )

    [photo] = sim_photos(sim)
    assert photo["id"] == photo_id
    assert photo["album_id"] == album_id
    assert photo["sha256"] == hashlib.sha256(image).hexdigest()
    assert photo["size"] == len(image)
    assert photo["caption"] == caption
    assert photo["filename"] == "sunset.png"
    assert photo["format"] == "png"
    assert photo["content_type"] == "image/png"


def test_gif_is_accepted(sim: str, client: GraphClient, album_id: str) -> None:
    upload_bytes(client, album_id, TINY_GIF, "dot.gif", content_type="image/gif")
    assert [photo["format"] for photo in sim_photos(sim)] == ["gif"]


def test_ten_megabyte_stream_is_read_in_bounded_chunks(
    sim: str, client: GraphClient, album_id: str
) -> None:
    total = 10 * MIB - 1024  # just under Facebook's limit
    stream = GeneratedImageStream(total)

    client.upload_photo(album_id, stream, total, "big.png", "image/png", "big one")  # type: ignore[arg-type]

    [photo] = sim_photos(sim)
    assert photo["size"] == total
    assert photo["sha256"] == stream.sha256.hexdigest()
    assert stream.reads > 10  # many small reads, never one big one


def test_a_big_photo_is_sent_in_large_blocks(sim: str, client: GraphClient, album_id: str) -> None:
    # Each block is one trip through the encoder, our reader, botocore and the socket: at
    # urllib3's 16 KiB a 10 MB photo takes 640 of them, the uploader's CPU per byte (P8).
    total = 10 * MIB - 1024
    stream = GeneratedImageStream(total)
    client.upload_photo(album_id, stream, total, "big.png", "image/png", "big one")  # type: ignore[arg-type]
    assert stream.reads <= total // (64 * 1024), stream.reads


def test_boto3_streaming_body_uploads(sim: str, client: GraphClient, album_id: str) -> None:
    image = png_bytes(300, 200, seed=3, level=0)  # ~180 KB, several reads
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="albums")
        s3.put_object(Bucket="albums", Key="trip/pier.png", Body=image, ContentType="image/png")
        obj = s3.get_object(Bucket="albums", Key="trip/pier.png")

        # S3's StreamingBody is read like a binary file (read(n)), as the uploader reads it.
        client.upload_photo(
            album_id,
            obj["Body"],  # type: ignore[arg-type]
            obj["ContentLength"],
            "pier.png",
            obj["ContentType"],
            "Pier",
        )
    finally:
        moto.stop()

    [photo] = sim_photos(sim)
    assert photo["sha256"] == hashlib.sha256(image).hexdigest()


def test_concurrent_uploads_all_recorded(sim: str, client: GraphClient, album_id: str) -> None:
    images = [png_bytes(16, 16, seed=n) for n in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(
            pool.map(
                lambda img: upload_bytes(client, album_id, img, f"{img[-20:].hex()}.png"), images
            )
        )

    recorded = {photo["id"]: photo["sha256"] for photo in sim_photos(sim)}
    assert set(ids) == set(recorded)
    assert sorted(recorded.values()) == sorted(hashlib.sha256(img).hexdigest() for img in images)


# Listing ------------------------------------------------------------------------------------


def test_listing_follows_paging(sim: str, album_id: str) -> None:
    session = RecordingSession()
    client = GraphClient(sim, VERSION, PAGE_ID, TOKEN, session=session)
    uploaded = [
        upload_bytes(client, album_id, png_bytes(4, 4, seed=n), caption=f"photo {n}")
        for n in range(30)
    ]
    session.calls.clear()

    listed = list(client.list_album_photos(album_id))

    assert [photo["id"] for photo in listed] == uploaded
    assert [photo["name"] for photo in listed] == [f"photo {n}" for n in range(30)]
    assert all(photo["created_time"].endswith("+0000") for photo in listed)
    assert [method for method, _, _ in session.calls] == ["GET", "GET"]  # 25 + 5
    # The token travels in a header, never in a URL that could be logged.
    assert all(TOKEN not in url for _, url, _ in session.calls)
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers in session.calls)


def test_graph_paging_shape(sim: str, client: GraphClient, album_id: str) -> None:
    for n in range(30):
        upload_bytes(client, album_id, png_bytes(4, 4, seed=n))
    url = f"{sim}/{VERSION}/{album_id}/photos"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    query = {"fields": "id,name", "limit": "25"}
    first = requests.get(url, params=query, headers=auth, timeout=5)
    first_body = first.json()
    assert len(first_body["data"]) == 25
    assert set(first_body["paging"]["cursors"]) == {"before", "after"}
    assert "after=" in first_body["paging"]["next"]
    assert "fields=id%2Cname" in first_body["paging"]["next"]

    second_body = requests.get(first_body["paging"]["next"], headers=auth, timeout=5).json()
    assert len(second_body["data"]) == 5
    assert "next" not in second_body["paging"]
    assert set(second_body["data"][0]) == {"id", "name"}


def test_empty_album_lists_nothing(client: GraphClient, album_id: str) -> None:
    assert list(client.list_album_photos(album_id)) == []


# Refusals -----------------------------------------------------------------------------------


def test_non_image_is_refused_permanently(sim: str, client: GraphClient, album_id: str) -> None:
    error = expect_graph_error(
        lambda: upload_bytes(client, album_id, b"%PDF-1.7 not a photo", "doc.pdf")
    )

    assert (error.http_status, error.code, error.is_transient) == (400, 324, False)
    assert "unsupported image format" in error.message
    failure = classify(error)
    assert failure.kind is FailureKind.PERMANENT
    assert failure.reason == "Facebook refused the image: unsupported format (code 324)"
    assert sim_photos(sim) == []


def test_image_over_ten_mib_is_refused(sim: str, client: GraphClient, album_id: str) -> None:
    image = png_bytes(1880, 1860, level=0)
    assert 10 * MIB < len(image) < 10 * MIB + 64 * 1024  # parsed, then refused for its size

    error = expect_graph_error(lambda: upload_bytes(client, album_id, image, "huge.png"))

    assert (error.code, error.subcode) == (324, 2069019)
    failure = classify(error)
    assert failure.kind is FailureKind.PERMANENT
    assert "larger than 10 MB" in failure.reason
    assert sim_photos(sim) == []


def test_oversized_request_is_refused_before_parsing(
    sim: str, client: GraphClient, album_id: str
) -> None:
    total = 10 * MIB + 256 * 1024
    error = expect_graph_error(
        lambda: client.upload_photo(
            album_id,
            GeneratedImageStream(total),  # type: ignore[arg-type]
            total,
            "x.png",
            "image/png",
            "",
        )
    )
    assert (error.http_status, error.code, error.subcode) == (400, 324, 2069019)
    assert "request is larger than 10 MB" in error.message
    assert sim_photos(sim) == []


def test_rejected_filename(sim: str, client: GraphClient, album_id: str) -> None:
    set_faults(sim, {"reject_filenames": ["blurry"]})

    error = expect_graph_error(lambda: upload_bytes(client, album_id, TINY_GIF, "a-blurry-one.gif"))
    upload_bytes(client, album_id, TINY_GIF, "sharp.gif")

    assert error.code == 324
    assert classify(error).reason == "Facebook refused the image: rejected image (code 324)"
    assert [photo["filename"] for photo in sim_photos(sim)] == ["sharp.gif"]


def test_wrong_token_is_an_auth_failure(sim: str, album_id: str) -> None:
    intruder = GraphClient(sim, VERSION, PAGE_ID, "not-the-token")

    error = expect_graph_error(lambda: upload_bytes(intruder, album_id, TINY_GIF))

    assert (error.http_status, error.code, error.error_type) == (400, 190, "OAuthException")
    assert classify(error).kind is FailureKind.AUTH
    assert "not-the-token" not in str(error)


def test_unknown_album_and_page(client: GraphClient, sim: str) -> None:
    album_error = expect_graph_error(lambda: upload_bytes(client, "999", TINY_GIF))
    assert (album_error.code, classify(album_error).kind) == (120, FailureKind.PERMANENT)

    other_page = GraphClient(sim, VERSION, "42", TOKEN)
    page_error = expect_graph_error(lambda: other_page.create_album("Nope"))
    assert (page_error.code, page_error.subcode) == (100, 33)
    assert page_error.error_type == "GraphMethodException"
    assert classify(page_error).kind is FailureKind.PERMANENT


def test_every_response_carries_graph_headers(sim: str, album_id: str) -> None:
    ok = requests.get(
        f"{sim}/v21.0/{album_id}/photos", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    bad = requests.get(
        f"{sim}/{VERSION}/{album_id}/photos", params={"access_token": "x"}, timeout=5
    )

    assert ok.headers["facebook-api-version"] == "v21.0"
    assert ok.headers["x-fb-trace-id"]
    assert bad.status_code == 400
    assert bad.json()["error"]["fbtrace_id"] == bad.headers["x-fb-trace-id"]
    assert bad.json()["error"]["message"].startswith("(#190) ")


# Faults -------------------------------------------------------------------------------------


def test_throttling_fault_carries_regain_time(sim: str, client: GraphClient, album_id: str) -> None:
    set_faults(sim, {"error_rates": {"613": 1.0}, "throttle_minutes": 2})

    error = expect_graph_error(lambda: upload_bytes(client, album_id, TINY_GIF))

    assert (error.http_status, error.code, error.is_transient) == (400, 613, None)
    assert error.regain_access_minutes == 2
    failure = classify(error)
    assert failure.kind is FailureKind.THROTTLED
    assert failure.wait_s == 120
    assert failure.reason == "Facebook is throttling these calls (code 613)"
    assert sim_photos(sim) == []


def test_plain_503_is_transient(sim: str, client: GraphClient, album_id: str) -> None:
    set_faults(sim, {"error_rates": {"503": 1.0}})

    error = expect_graph_error(lambda: upload_bytes(client, album_id, TINY_GIF))

    assert not isinstance(error, GraphNetworkError)
    assert (error.http_status, error.code) == (503, None)
    assert "Service Unavailable" in error.message
    failure = classify(error)
    assert (failure.kind, failure.code) == (FailureKind.TRANSIENT, 503)


def test_graph_code_2_is_transient(sim: str, client: GraphClient, album_id: str) -> None:
    set_faults(sim, {"error_rates": {"2": 1.0}})

    error = expect_graph_error(lambda: upload_bytes(client, album_id, TINY_GIF))

    assert (error.http_status, error.code, error.is_transient) == (500, 2, True)
    assert classify(error).kind is FailureKind.TRANSIENT


def test_latency_fault_makes_the_client_time_out(sim: str, album_id: str) -> None:
    set_faults(sim, {"latency_s": 1.0})
    impatient = GraphClient(sim, VERSION, PAGE_ID, TOKEN, timeout=(5.0, 0.2))

    with pytest.raises(GraphNetworkError) as caught:
        upload_bytes(impatient, album_id, TINY_GIF)

    assert caught.value.http_status is None
    assert "timed out" in caught.value.message
    assert classify(caught.value).kind is FailureKind.TRANSIENT
    assert caught.value.request_sent and may_have_landed(caught.value)
    # The server still takes the photo once its delay is over: a timeout is not a failure,
    # which is why the uploader must check the album before re-posting.
    assert wait_for(lambda: sim_photos(sim))


def test_faults_apply_only_to_chosen_endpoints(sim: str, client: GraphClient) -> None:
    set_faults(sim, {"error_rates": {"1": 1.0}, "endpoints": ["albums", "list"]})
    made_by_hand = requests.post(f"{sim}/_sim/albums", json={"name": "Manual"}, timeout=5).json()

    album_error = expect_graph_error(lambda: client.create_album("Fails"))
    upload_bytes(client, made_by_hand["id"], TINY_GIF)
    list_error = expect_graph_error(lambda: list(client.list_album_photos(made_by_hand["id"])))

    assert (album_error.http_status, album_error.code) == (500, 1)
    assert classify(album_error).kind is FailureKind.TRANSIENT
    assert list_error.code == 1
    assert len(sim_photos(sim)) == 1


def test_seeded_error_rates_repeat(sim: str, client: GraphClient, album_id: str) -> None:
    def outcomes() -> list[int | None]:
        set_faults(sim, {"error_rates": {"2": 0.5}, "seed": 1234})
        results: list[int | None] = []
        for _ in range(12):
            try:
                upload_bytes(client, album_id, TINY_GIF)
                results.append(None)
            except GraphError as exc:
                results.append(exc.code)
        return results

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {None, 2}


def test_fault_config_round_trip_and_validation(sim: str) -> None:
    set_faults(sim, {"error_rates": {"613": 0.25}, "throttle_minutes": 5})
    current = requests.get(f"{sim}/_sim/faults", timeout=5).json()
    assert current["error_rates"] == {"613": 0.25}
    assert current["endpoints"] == ["photos"]
    assert current["latency_s"] == 0

    bad = requests.put(f"{sim}/_sim/faults", json={"error_rate": {"2": 1}}, timeout=5)
    assert bad.status_code == 400
    assert requests.get(f"{sim}/_sim/faults", timeout=5).json() == current


# Network and source failures ----------------------------------------------------------------


def test_connection_refused_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nobody = GraphClient(f"http://127.0.0.1:{port}", VERSION, PAGE_ID, TOKEN, timeout=(2.0, 2.0))

    with pytest.raises(GraphNetworkError) as caught:
        nobody.create_album("Anything")

    assert caught.value.http_status is None
    assert "connection refused" in caught.value.message
    assert classify(caught.value).kind is FailureKind.TRANSIENT
    # Nothing was sent, so nothing can have been made: a create may be tried again at once.
    assert not caught.value.request_sent and not may_have_landed(caught.value)


def test_short_source_fails_fast_and_is_transient(
    sim: str, client: GraphClient, album_id: str
) -> None:
    with pytest.raises(SourceTruncatedError) as caught:
        client.upload_photo(album_id, OneWayStream(TINY_GIF), 5000, "short.gif", "image/gif", "")  # type: ignore[arg-type]

    assert classify(caught.value).kind is FailureKind.TRANSIENT
    assert sim_photos(sim) == []


def test_s3_read_error_surfaces_unchanged(sim: str, client: GraphClient, album_id: str) -> None:
    stream = FailingStream(png_bytes(8, 8), expected=100_000)

    with pytest.raises(IncompleteReadError) as caught:
        client.upload_photo(album_id, stream, 100_000, "broken.png", "image/png", "")  # type: ignore[arg-type]

    assert classify(caught.value).kind is FailureKind.TRANSIENT
    assert sim_photos(sim) == []
