"""`python -m services.api` on an API_PORT another process listens on stops at start, non-zero,
with one line naming the address and the setting: no OSError traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dev.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _api(amqp_url: str, tmp_path: Path, host: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.api"],
        cwd=tmp_path,  # no .env of the checkout's
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AMQP_URL": amqp_url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/albums.db",
            "API_HOST": host,
            "API_PORT": str(port),
            "LOG_FORMAT": "text",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_a_taken_api_port_stops_the_api_with_one_line(amqp_url: str, tmp_path: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # another process's listener, as it were
        last = _last_line(_api(amqp_url, tmp_path, "127.0.0.1", port))
    assert f"127.0.0.1:{port}" in last and "API_PORT" in last and "API_HOST" in last, last
    assert "in use" in last, last


def test_an_api_host_that_does_not_resolve_stops_the_api_with_one_line(
    amqp_url: str, tmp_path: Path
) -> None:
    last = _last_line(_api(amqp_url, tmp_path, "nowhere.invalid", 8000))
    assert "nowhere.invalid:8000" in last and "API_HOST" in last, last
