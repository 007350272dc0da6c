"""python -m dev.seed: a demo user with 20 images in the local bucket, and a ready curl line.

With --wait-ready the banner waits until every service's /readyz answers (`make run` starts
them all at once), and with --stay it then waits (so `make run` keeps it beside the services
without stopping them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import signal
import sys
import time
import urllib.request
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dev.graph_simulator import DEFAULT_PAGE_ID, DEFAULT_PAGE_TOKEN
from dev.images import png
from dev.waiting import wait_for
from services.api.settings import ApiSettings
from shared.adapters import s3
from shared.config.token_cipher import TokenCipher, TokenCipherError, cipher_from_setting
from shared.store import PageState, Store

DEMO_EMAIL = "demo@example.com"
DEMO_IMAGES = 20
#: How long --wait-ready waits for the services in all: past it the banner comes anyway,
#: after a line naming the ones that do not answer (their own log lines say why).
READY_WAIT_S = 120.0


def ensure_bucket(client: Any, bucket: str, wait_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            return
        except ClientError:
            client.create_bucket(Bucket=bucket)
            return
        except BotoCoreError:  # the S3 endpoint is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def seed(settings: ApiSettings) -> dict[str, Any]:
    store = Store(settings.database_url)
    store.create_schema()
    user, token = store.create_user(DEMO_EMAIL)
    connect_demo_page(store, settings, user.id)
    client = s3.make_client(settings)
    ensure_bucket(client, settings.s3_bucket)
    keys = []
    for n in range(1, DEMO_IMAGES + 1):
        key = f"{user.prefix}demo/photo-{n:02d}.png"
        client.put_object(
            Bucket=settings.s3_bucket, Key=key, Body=png(640, 480, seed=n), ContentType="image/png"
        )
        keys.append(key)
    return {"user": user, "token": token, "keys": keys}


def connect_demo_page(store: Store, settings: ApiSettings, user_id: int) -> None:
    """The demo user's Facebook Page: the simulator's Page of its fake user, with the token
    this run's simulator accepts, as connecting it through /connect/facebook would.

    On every start, not only the first: the simulator keeps what it issued in memory, so a
    Page connected through its Facebook Login in an earlier run holds a token it refuses
    now (the demo's photos would pause for a reconnect). Connecting again queues the photos
    that paused for it; the API's outbox relay sends them."""
    cipher = cipher_from_setting(settings.token_encryption_keys.get_secret_value())
    page_id = settings.facebook_page_id or DEFAULT_PAGE_ID
    token = settings.facebook_page_token.get_secret_value() or DEFAULT_PAGE_TOKEN
    if not _connected_with(store, cipher, user_id, page_id, token):
        store.connect_page(user_id, page_id, "Demo Page", cipher.encrypt(token))


def _connected_with(
    store: Store, cipher: TokenCipher, user_id: int, page_id: str, token: str
) -> bool:
    page = store.page(user_id)
    credentials = store.page_credentials(user_id, page_id)
    if page is None or page.state != PageState.CONNECTED or credentials is None:
        return False
    try:
        return cipher.decrypt(credentials.token_sealed) == token
    except TokenCipherError:  # sealed under a key since removed (var/ wiped): seal it again
        return False


def curl_line(api_url: str, token: str, keys: list[str]) -> str:
    body = json.dumps({"title": "Demo album", "images": keys})
    return (
        f"curl -sS -X POST {api_url}/api/albums -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def health_ports() -> dict[str, int]:
    """The consumers' health (and metrics) ports, as their settings read them."""
    from services.notifier.settings import NotifierSettings
    from services.uploader.settings import UploaderSettings

    return {
        "uploader": UploaderSettings().uploader_health_port,
        "notifier": NotifierSettings().notifier_health_port,
    }


def metrics_ports(settings: ApiSettings) -> dict[str, int]:
    """Each service's /metrics port (0: none), as its settings read them."""
    from services.notifier.settings import NotifierSettings
    from services.uploader.settings import UploaderSettings

    return {
        "api": settings.api_metrics_port,
        "uploader": UploaderSettings().uploader_metrics_port,
        "notifier": NotifierSettings().notifier_metrics_port,
    }


def api_url(settings: ApiSettings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def readyz_urls(settings: ApiSettings, ports: dict[str, int]) -> list[str]:
    """The API's /readyz and each consumer's (a port of 0 serves none)."""
    hosts = [api_url(settings)] + [
        f"http://{settings.health_host}:{port}" for port in ports.values() if port
    ]
    return [f"{host}/readyz" for host in hosts]


def inbox_url() -> str:
    # The mail catcher's own setting (dev/mail_catcher.py), not one of the services'.
    return f"http://127.0.0.1:{os.environ.get('MAIL_UI_PORT', '8025')}"


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)


def wait_until_ready(
    urls: list[str], timeout: float = READY_WAIT_S, every: float = 0.1
) -> list[str]:
    """Wait for each URL to answer 200, all within one `timeout`; the ones that did not."""
    deadline = time.monotonic() + timeout
    late = []
    for url in urls:
        try:
            # Refused or 503 (an HTTPError is an OSError): still starting.
            wait_for(
                functools.partial(_ready, url),
                max(0.0, deadline - time.monotonic()),
                every,
                what=url,
                tolerate=(OSError,),
            )
        except TimeoutError:
            late.append(url)
    return late


def banner(
    settings: ApiSettings,
    ports: dict[str, int],
    email: str,
    token: str,
    keys: list[str],
    metrics: dict[str, int] | None = None,
) -> str:
    """What `make run` prints once the demo is seeded: every address an operator opens."""
    api = api_url(settings)
    ui_user = settings.rabbitmq_management_user
    # Each service's /metrics has a port of its own, and RabbitMQ's plugin serves the broker's.
    scrapes = [
        f"http://{settings.metrics_host}:{port}/metrics"
        for port in [*(metrics or {}).values(), 15692]
        if port
    ]
    return f"""
==> Album publisher is running.
    Browser:        {api}/   (sign in with the demo user's token)
    API:            {api}   (OpenAPI: {api}/api/openapi.json)
    Inbox:          {inbox_url()}
    Dead letters:   {api}/operator/dead-letters
    RabbitMQ UI:    {settings.rabbitmq_management_url}   (user {ui_user}, AMQP_URL's password)
    Health:         {"  ".join(readyz_urls(settings, ports))}
    Metrics:        {"  ".join(scrapes)}
    Demo user:      {email}   token: {token}
    Publish the demo album ({len(keys)} images):

{curl_line(api, token, keys)}

    Then follow it:  curl -sS -H 'Authorization: Bearer {token}' {api}/api/albums
"""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.seed")
    parser.add_argument(
        "--wait-ready",
        action="store_true",
        help="print the banner once every service's /readyz answers",
    )
    parser.add_argument("--stay", action="store_true", help="wait for a signal after seeding")
    args = parser.parse_args()
    if args.stay:
        # From the start: a Ctrl-C while it seeds or waits for the services ends it quietly.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: sys.exit(0))
    settings = ApiSettings()
    result = seed(settings)
    ports = health_ports()
    late = wait_until_ready(readyz_urls(settings, ports)) if args.wait_ready else []
    if late:
        print(
            f"==> Not ready after {READY_WAIT_S:g} s: {'  '.join(late)} (their logs say why)",
            flush=True,
        )
    print(
        banner(
            settings,
            ports,
            result["user"].email,
            result["token"],
            result["keys"],
            metrics_ports(settings),
        ),
        flush=True,
    )
    if args.stay:
        signal.pause()


if __name__ == "__main__":
    main()
