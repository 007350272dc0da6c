"""Each service's /metrics during a real album with failures: the counts match what happened,
and the alert rules fire on the scraped series (deploy/prometheus/alerts.yml)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from dev import dashboard_picture, prometheus_server
from dev.images import png
from dev.ports import answers, free_port
from shared.contracts import topology
from shared.store import Store
from shared.store.tables import Album, utcnow
from tests.alert_rules import evaluate, fired, silent, summary_of
from tests.e2e.conftest import System, e2e_system
from tests.integration.helpers import message_count, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("api", "uploader", "notifier")
UPLOADS = topology.IMAGE_UPLOADS.name
SETTLED = topology.ALBUM_SETTLED.name

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory, broker: Any, make_vhost: Any
) -> Iterator[System]:
    """The whole system on a vhost of its own, each service serving /metrics, and two
    uploader processes behind the uploader's one port."""
    url = str(broker.url(make_vhost(for_session=True)))
    system = e2e_system(tmp_path_factory.mktemp("metrics"), url)
    system.metrics_ports = {name: free_port() for name in SERVICES}  # type: ignore[attr-defined]
    system.env.update(
        {f"{name.upper()}_METRICS_PORT": str(port) for name, port in system.metrics_ports.items()}  # type: ignore[attr-defined]
    )
    system.env["UPLOADER_PROCESSES"] = "2"
    try:
        system.start_all()
        yield system
    finally:
        system.stop_all()


@pytest.fixture(autouse=True)
def no_faults() -> None:
    """This module's system has no faults set (the package's fixture would start another)."""


def scrape(system: System, service: str) -> Samples:
    port = system.metrics_ports[service]  # type: ignore[attr-defined]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def jobs(samples: Samples, queue: str, outcome: str, code: str = "") -> float:
    return value(samples, "albums_jobs_total", queue=queue, outcome=outcome, code=code)


def test_the_scrapes_count_what_happened_and_the_alerts_fire(
    metered: System, tmp_path: Path
) -> None:
    user = metered.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    keys = []
    for n in range(18):
        keys.append(f"{user['prefix']}metrics/photo-{n:02d}.png")
        metered.put(keys[-1], png(320, 240, seed=n))
    for n in range(2):  # Facebook refuses their bytes: code 324, no retry
        keys.append(f"{user['prefix']}metrics/broken-{n}.png")
        metered.put(keys[-1], b"not an image at all")
    before = {service: scrape(metered, service) for service in SERVICES}

    response = metered.publish(user["token"], title="Metered", images=keys)
    assert response.status_code == 202, response.text
    album = metered.wait_settled(user["token"], response.json()["id"])
    assert album["state"] == "done_with_failures"
    wait_for(lambda: len(metered.mails_to(user["email"])) == 1, timeout=30, what="the email")
    wait_for(
        lambda: message_count(metered.env["AMQP_URL"], SETTLED) == 0,
        what="the notifier's queue to drain",
    )
    wait_for(
        lambda: jobs(scrape(metered, "notifier"), SETTLED, "done") == 1,
        timeout=10,
        what="the notifier to count its job",
    )
    after = {service: scrape(metered, service) for service in SERVICES}

    uploader, notifier, api = after["uploader"], after["notifier"], after["api"]
    assert jobs(uploader, UPLOADS, "done") - jobs(before["uploader"], UPLOADS, "done") == 18
    assert jobs(uploader, UPLOADS, "dead_lettered", "324") == 2
    assert jobs(uploader, UPLOADS, "retried") == 0
    assert value(uploader, "albums_job_duration_seconds_count", queue=UPLOADS) == 20
    assert value(uploader, "albums_upload_bytes_total") > 18 * 1000
    assert value(notifier, "albums_emails_total", outcome="sent") == 1
    assert value(notifier, "albums_emails_total", outcome="failed") == 0
    assert jobs(notifier, SETTLED, "done") == 1
    assert value(notifier, "albums_publish_to_settle_seconds_count") == 1
    for samples in (api, uploader, notifier):  # the store's gauges, the same from each
        assert value(samples, "albums_publishing") == 0
        assert value(samples, "albums_outbox_backlog") == 0
        assert value(samples, "albums_images_uploading_past_lease") == 0

    # The dead-letter counter as scraped before and after the album, a minute apart.
    dead = f'albums_jobs_total{{queue="{UPLOADS}",outcome="dead_lettered",code="324"}}'
    dead_values = (
        f"{jobs(before['uploader'], UPLOADS, 'dead_lettered', '324'):g} "
        f"{jobs(uploader, UPLOADS, 'dead_lettered', '324'):g}x20"
    )
    # A stuck album: one whose publish the store dates six hours back, as the API scrapes it.
    _stuck_album(metered)
    age = value(scrape(metered, "api"), "albums_oldest_publishing_age_seconds")
    assert age >= 6 * 3600
    result = evaluate(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [{"series": dead, "values": dead_values}],
                "alert_rule_test": [
                    fired("DeadLettersGrowing", "6m", summary_of("DeadLettersGrowing"), "ticket")
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": "albums_oldest_publishing_age_seconds",
                        "values": f"{age:.0f}+60x20",
                    },
                    {
                        "series": "albums_circuit_breaker_open",
                        "values": f"{value(uploader, 'albums_circuit_breaker_open'):g}x20",
                    },
                ],
                "alert_rule_test": [
                    fired(
                        "AlbumPublishingTooLong",
                        "11m",
                        summary_of("AlbumPublishingTooLong"),
                        "page",
                    ),
                    silent("CircuitBreakerOpen", "11m"),
                ],
            },
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _stuck_album(system: System) -> str:
    """An album left publishing six hours ago (its one image has no message)."""
    store = Store(system.env["DATABASE_URL"])
    try:
        user, _ = store.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
        album_id, _ = store.create_album(user.id, "Stuck", None, [f"{user.prefix}x.png"], window=0)
        with store.engine.begin() as db:
            db.execute(
                update(Album)
                .where(Album.id == album_id)
                .values(created_at=utcnow() - timedelta(hours=6))
            )
        return album_id
    finally:
        store.dispose()


def test_the_dashboard_picture(metered: System, tmp_path: Path) -> None:
    """`make screenshots`: an album with failures while a real Prometheus scrapes every
    service, then each dashboard panel's queries drawn into docs/dashboard.png."""
    out_dir = os.environ.get("SCREENSHOT_DIR")
    if not out_dir:
        pytest.skip("draws the README's picture only under `make screenshots`")
    pytest.importorskip("matplotlib")
    targets = {name: f"127.0.0.1:{port}" for name, port in metered.metrics_ports.items()}  # type: ignore[attr-defined]
    if answers(15692):  # the broker's own plugin, where it is on (`make run` enables it)
        targets["rabbitmq"] = "127.0.0.1:15692"
    # Slower uploads and a few refusals: a run long enough to draw, with retries in it.
    metered.set_faults(latency_s=1.5, error_rates={503: 0.15}, seed=7)
    with prometheus_server.running(tmp_path, targets) as prometheus:
        start = time.time()
        wait_for(
            lambda: (
                len(dashboard_picture.query_range(prometheus, "up == 1", start, time.time()))
                == len(targets)
            ),
            timeout=30,
            what="prometheus to scrape every target",
        )
        user = metered.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
        keys = [f"{user['prefix']}picture/photo-{n:02d}.png" for n in range(18)]
        for n, key in enumerate(keys):
            metered.put(key, png(640, 480, seed=n))
        for n in range(2):
            keys.append(f"{user['prefix']}picture/broken-{n}.png")
            metered.put(keys[-1], b"not an image at all")
        album_id = metered.publish(user["token"], title="Picture", images=keys).json()["id"]
        metered.wait_settled(user["token"], album_id, timeout=180)
        metered.set_faults()
        wait_for(lambda: len(metered.mails_to(user["email"])) == 1, timeout=30, what="mail")
        wait_for(
            lambda: dashboard_picture.query_range(
                prometheus, "sum(albums_emails_total)", start, time.time()
            ),
            timeout=30,
            what="prometheus to scrape the notifier",
        )
        end = time.time() + 5
        wait_for(lambda: time.time() > end, timeout=10, what="a few more scrapes")
        out = Path(out_dir) / "dashboard.png"
        dashboard_picture.draw(prometheus, start, time.time(), out)
        jobs_now = dashboard_picture.query_range(
            prometheus, 'sum(albums_jobs_total{outcome="done"})', start, time.time()
        )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert float(jobs_now[0]["values"][-1][1]) >= 18
