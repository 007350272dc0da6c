"""Slow clients against the API as it is served (`python -m services.api`, a process of its own):
half-sent requests hold no worker thread, are dropped once their headers or body are late, and
a body over the limit is refused before it is read (issue 11)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dev.ports import free_port
from dev.rabbit_admin import Broker
from services.api.file_limits import RESERVED
from shared.store import Store
from tests.conftest import VhostMaker
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HALF_OPEN = 200
HEADER_TIMEOUT_S = 5  # long enough for 200 connections to be made and checked first
BODY_TIMEOUT_S = 3
MAX_BODY = 64 * 1024
#: Plenty of time for the server to act on a timeout of a few seconds (checked once a second).
SLACK_S = 10
#: The soft open-file limit the API is started with: lower than 200 connections need.
LOW_SOFT_LIMIT = 128


class Api:
    def __init__(self, port: int, pid: int, database_url: str) -> None:
        self.port = port
        self.pid = pid
        self.database_url = database_url
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def healthz_status(self, timeout: float) -> int | str:
        """The status of GET /healthz, or the name of what went wrong within `timeout`."""
        try:
            return requests.get(f"{self.url}/healthz", timeout=timeout).status_code
        except requests.RequestException as exc:
            return type(exc).__name__


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker, make_vhost: VhostMaker
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("slow-clients")
    port = free_port()
    url = broker.url(make_vhost(for_session=True))
    env = {
        **os.environ,
        "AMQP_URL": url,
        "DATABASE_URL": f"sqlite:///{workdir}/albums.db",
        "API_PORT": str(port),
        "API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "API_MAX_BODY_BYTES": str(MAX_BODY),
        "PYTHONUNBUFFERED": "1",
    }
    with open(workdir / "api.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.api"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_low_open_file_limit,
        )
    server = Api(port, process.pid, env["DATABASE_URL"])
    try:
        wait_for(lambda: server.healthz_status(1) == 200, timeout=30, what="the API")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _low_open_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))


def open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])  # the soft limit
    raise AssertionError("no open-file limit in /proc")


def dropped_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `sock` (b"" for nothing), or None if it kept the
    connection open for `seconds`."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_200_half_open_connections_leave_healthz_answering_within_a_second(api: Api) -> None:
    slow = [api.connect() for _ in range(HALF_OPEN)]
    try:
        for sock in slow:  # an unfinished request line, then nothing
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow")
        assert api.healthz_status(timeout=1.0) == 200
        assert sum(still_open(sock) for sock in slow) == HALF_OPEN  # they were still holding on
        # ...until their headers are late: then every one is dropped.
        late = [dropped_within(sock, HEADER_TIMEOUT_S + SLACK_S) for sock in slow]
        assert all(answer is not None for answer in late), late.count(None)
    finally:
        for sock in slow:
            sock.close()


def test_the_api_raised_its_open_file_limit_for_its_connections(api: Api) -> None:
    assert open_file_limit(api.pid) >= 1000 + RESERVED  # API_MAX_CONNECTIONS' default


def test_headers_that_do_not_arrive_in_time_are_dropped(api: Api) -> None:
    with api.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        assert dropped_within(sock, HEADER_TIMEOUT_S + SLACK_S) is not None


def test_headers_trickled_a_line_at_a_time_are_dropped_all_the_same(api: Api) -> None:
    """Slowloris: never quiet for long, never done."""
    with api.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        for line in range(4 * (HEADER_TIMEOUT_S + SLACK_S)):
            try:
                sock.sendall(b"X-Trickle-%d: 1\r\n" % line)
            except OSError:  # reset: the server closed it
                break
            if dropped_within(sock, 0.25) is not None:
                break
        else:
            pytest.fail("a request trickling its headers was never dropped")


def test_a_connection_that_sends_nothing_is_dropped(api: Api) -> None:
    with api.connect() as sock:
        assert dropped_within(sock, HEADER_TIMEOUT_S + SLACK_S) is not None


def test_a_body_that_does_not_arrive_in_time_is_dropped(api: Api) -> None:
    with api.connect() as sock:
        # /login reads its form: the body is promised, a tenth of it sent, the rest never.
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: slow\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\ntoken=abcd"
        )
        answer = dropped_within(sock, BODY_TIMEOUT_S + SLACK_S)
        assert answer is not None
        assert not answer.startswith(b"HTTP/1.1 2"), answer  # the app never saw a half body


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    with api.connect() as sock:
        sock.sendall(
            b"POST /api/albums HTTP/1.1\r\nHost: slow\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(MAX_BODY + 1).encode() + b"\r\n\r\n"
        )
        answer = dropped_within(sock, SLACK_S)  # nothing of the body was sent
        assert answer is not None and answer.startswith(b"HTTP/1.1 413"), answer
        assert f"at most {MAX_BODY} bytes".encode() in answer
    # The API's errors are JSON (README, The HTTP API), this one too, with every answer's headers.
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = head.decode().lower()
    assert "content-type: application/json" in headers, head
    assert "cache-control: no-store" in headers and "x-content-type-options: nosniff" in headers
    assert json.loads(body) == {
        "error": f"a request body may have at most {MAX_BODY} bytes (API_MAX_BODY_BYTES)"
    }


def test_a_body_at_the_limit_reaches_the_app(api: Api) -> None:
    body = b"{" + b" " * (MAX_BODY - 2) + b"}"
    response = requests.post(
        f"{api.url}/api/albums", data=body, timeout=10, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401  # the app answered: no token, not "too large"


def test_live_streams_cannot_starve_healthz(api: Api) -> None:
    """Each open live-progress stream holds a thread; at most half of them (API_SSE_STREAMS's
    default), so twice as many browsers as threads still leave /healthz answering. The browsers
    belong to eight users, each within their own share (API_SSE_STREAMS_PER_USER's default, a
    quarter of the threads)."""
    store = Store(api.database_url)
    threads = 16  # API_THREADS' default
    users = 8
    streams: list[requests.Response] = []
    try:
        for n in range(users):
            browser, album_id = _signed_in_with_an_album(api, store, f"live{n}@example.com")
            streams += [
                browser.get(f"{api.url}/albums/{album_id}/events", stream=True, timeout=10)
                for _ in range(2 * threads // users)
            ]
        for stream in streams:  # every browser got the album, held or not
            assert stream.status_code == 200
            assert b"event: album" in b"".join(_first_event(stream))
        assert api.healthz_status(timeout=1.0) == 200
    finally:
        for stream in streams:
            stream.close()


def _signed_in_with_an_album(api: Api, store: Store, email: str) -> tuple[requests.Session, str]:
    user, token = store.create_user(email)
    album_id, _ = store.create_album(user.id, "Live", None, [f"{user.prefix}a.png"])
    browser = requests.Session()
    login = browser.get(f"{api.url}/login", timeout=5).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf is not None
    browser.post(
        f"{api.url}/login", data={"token": token, "csrf_token": csrf.group(1)}, timeout=5
    ).raise_for_status()
    return browser, album_id


def _first_event(stream: requests.Response) -> Iterator[bytes]:
    for line in stream.iter_lines():
        yield line
        if line.startswith(b"data:"):
            return
