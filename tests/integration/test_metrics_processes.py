"""Several processes of a service, one /metrics: the parent serves the sum of what each child
counted (prometheus-client's multiprocess mode, shared/observability/metrics.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dev.ports import free_port
from shared.observability import metrics

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from shared.observability import metrics
for _ in range(int(sys.argv[1])):
    metrics.count_fate("uploader.image-uploads", "done", None, 0.2)
metrics.count_fate("uploader.image-uploads", "dead_lettered", 324, 0.1)
metrics.BYTES_SENT.inc(1000)
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_parent_serves_the_sum_of_two_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_DIR: str(tmp_path)}
    for count in (5, 7):
        subprocess.run(
            [sys.executable, "-c", CHILD, str(count)], cwd=ROOT, env=env, check=True, timeout=60
        )
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))
    port = free_port()
    server, _thread = metrics.serve(port)
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    found = samples(text)
    queue = ("queue", "uploader.image-uploads")
    assert found[("albums_jobs_total", (("code", ""), ("outcome", "done"), queue))] == 12
    assert found[("albums_jobs_total", (("code", "324"), ("outcome", "dead_lettered"), queue))] == 2
    assert found[("albums_upload_bytes_total", ())] == 2000
    assert found[("albums_job_duration_seconds_count", (queue,))] == 14


def test_a_port_taken_leaves_the_process_running() -> None:
    port = free_port()
    first = metrics.serve(port)
    try:
        assert metrics.serve(port) is None  # logged, not raised
    finally:
        first[0].shutdown()
        first[0].server_close()
    assert metrics.serve(0) is None  # 0: no /metrics at all


BREAKER = """
import os
from shared.observability import metrics
metrics.BREAKER_OPEN.set(1)
metrics.count_fate("uploader.image-uploads", "done", None, 0.2)
print(os.getpid())
"""


def test_a_process_gone_stops_holding_the_breaker_open_but_its_counts_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_DIR: str(tmp_path)}
    pid = int(
        subprocess.run(
            [sys.executable, "-c", BREAKER],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout
    )
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))
    port = free_port()
    server, _thread = metrics.serve(port)
    try:

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

        assert scrape()[("albums_circuit_breaker_open", ())] == 1
        metrics.forget_process(pid)
        after = scrape()
    finally:
        server.shutdown()
        server.server_close()
    assert after.get(("albums_circuit_breaker_open", ()), 0) == 0
    assert (
        after[
            (
                "albums_jobs_total",
                (("code", ""), ("outcome", "done"), ("queue", "uploader.image-uploads")),
            )
        ]
        == 1
    )
