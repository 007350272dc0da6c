"""python -m services.uploader [dead-letters ...|topology ...|broker-users]: consume image
uploads until SIGTERM, or work on the dead letters, the broker's policies or its users.

The uploader owns the topology: it declares every exchange and queue (the notifier's too) and
applies the policies; the API and the notifier declare nothing (docs/broker-users.md)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
from datetime import timedelta

from shared.adapters import s3
from shared.adapters.graph_client import GraphClient
from shared.broker import connection as broker
from shared.broker.consumer import Consumer
from shared.broker.dead_letter_queue import DeadLetterQueue
from shared.broker.declarer import TopologyDeclarer
from shared.broker.policies import try_apply_policies
from shared.broker.publisher import Publisher
from shared.config.settings import load
from shared.config.token_cipher import cipher_from_setting
from shared.contracts import topology
from shared.delivery.outbox import Outbox
from shared.observability import health_server, metrics
from shared.observability.readiness import service_checks
from shared.observability.store_metrics import StoreCollector
from shared.process import process_pool
from shared.process.runtime import freeze_startup_heap, setup_logging, stop_on_signals
from shared.store import Store

from . import broker_users_cli, dead_letters_cli, topology_cli
from .circuit_breaker import CircuitBreaker
from .dead_letter_drain import DeadLetterDrain
from .feed_poster import FeedPoster
from .handler import ImageUploader, Policy, in_flight_window
from .pages import Pages
from .settings import UploaderSettings
from .sweeper import LostMessageSweeper
from .throttle_gate import ThrottleGate


def consume(settings: UploaderSettings) -> None:
    stop = stop_on_signals()
    if settings.uploader_processes > 1:
        sys.exit(supervise(settings, stop))
    store = Store(settings.database_url)
    store.create_schema()
    metrics.serve(settings.uploader_metrics_port, settings.metrics_host, StoreCollector(store))
    publisher = Publisher(settings.amqp_url)
    outbox = Outbox(store, publisher)
    outbox.start_relay(stop)
    ready = functools.partial(broker.ready_count, settings.amqp_url, topology.IMAGE_UPLOADS.name)
    LostMessageSweeper(
        store,
        outbox,
        ready,
        timedelta(seconds=settings.lost_message_after_s),
        in_flight_window(settings.graph_timeout_s),
    ).start(stop, settings.lost_message_sweep_s)
    DeadLetterDrain(
        store,
        [DeadLetterQueue(settings.amqp_url, q) for q in topology.WORK_QUEUES],
        publisher.publish_confirmed,
        settings.dead_letter_drain_batch,
    ).start(stop, settings.dead_letter_drain_s)
    fallback = settings.single_tenant_page
    gate = ThrottleGate(
        store, fallback[0] if fallback else "", settings.usage_threshold_pct, settings.usage_pause_s
    )

    def page_client(page_id: str, token: str) -> GraphClient:
        # Each Page's usage headers hold that Page (and the app), as its own gate records them.
        page_gate = ThrottleGate(
            store, page_id, settings.usage_threshold_pct, settings.usage_pause_s
        )
        return GraphClient(
            settings.graph_api_url,
            settings.graph_api_version,
            page_id,
            token,
            timeout=(5.0, settings.graph_timeout_s),
            pool_size=settings.uploader_concurrency,
            on_usage=page_gate.record,
        )

    # Each album publishes to the Page it recorded, with that Page's token (services/uploader/
    # pages.py); FACEBOOK_PAGE_ID/TOKEN serve albums posted without a connection.
    pages = Pages(
        store,
        cipher_from_setting(settings.token_encryption_keys.get_secret_value()),
        page_client,
        fallback,
    )
    breaker = CircuitBreaker(
        settings.breaker_window_s,
        settings.breaker_min_calls,
        settings.breaker_failure_ratio,
        settings.breaker_cooldown_s,
    )
    handler = ImageUploader(
        store,
        outbox,
        None,
        s3.make_client(settings),
        settings.s3_bucket,
        Policy(
            settings.retry_delays,
            settings.max_attempts,
            settings.graph_timeout_s,
            throttle_give_up_s=settings.throttle_give_up_s,
        ),
        breaker,
        gate,
        pages,
    )
    try_apply_policies(settings)
    # The album's second job, the multi-photo post: a route of its own on the same runtime,
    # one post at a time (a post is one request, albums settle far apart).
    poster = FeedPoster(store, outbox, pages.client_for, handler.policy)
    posts = Consumer(
        settings.amqp_url,
        poster.route(),
        1,
        on_connect=TopologyDeclarer.from_settings(settings),
        grace_s=settings.shutdown_grace_s,
        publisher=publisher,
    )
    posting = threading.Thread(target=posts.run, args=(stop,), name="feed-posts")
    posting.start()
    # The outbox's publisher also carries the runtime's retry copies and poison dead letters.
    consumer = Consumer(
        settings.amqp_url,
        handler.route(),
        settings.uploader_concurrency,
        on_connect=TopologyDeclarer.from_settings(settings),
        grace_s=settings.shutdown_grace_s,
        publisher=publisher,
    )
    if settings.uploader_health_port:
        health_server.serve(
            settings.health_host,
            settings.uploader_health_port,
            service_checks(
                store, [(topology.IMAGE_UPLOADS.name, consumer), (topology.FEED_POSTS.name, posts)]
            ),
        )
    freeze_startup_heap()
    consumer.run(stop)
    posting.join()
    publisher.close()


def supervise(settings: UploaderSettings, stop: threading.Event) -> int:
    """Run the processes; their figures meet in one directory, served here as one sum."""
    with tempfile.TemporaryDirectory(prefix="uploader-metrics-") as figures:
        os.environ[metrics.MULTIPROC_DIR] = figures
        store = Store(settings.database_url)
        metrics.serve(settings.uploader_metrics_port, settings.metrics_host, StoreCollector(store))
        return process_pool.supervise(
            settings.uploader_processes,
            "services.uploader",
            # Each child would bind the same ports: the children serve none (README).
            {
                "UPLOADER_PROCESSES": "1",
                "UPLOADER_METRICS_PORT": "0",
                "UPLOADER_HEALTH_PORT": "0",
                metrics.MULTIPROC_DIR: figures,
            },
            stop,
            settings.shutdown_grace_s,
            on_exit=metrics.forget_process,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.uploader")
    commands = parser.add_subparsers(dest="command")
    dead_letters_cli.add_parser(commands)
    topology_cli.add_parser(commands)
    broker_users_cli.add_parser(commands)
    args = parser.parse_args()
    settings = load(UploaderSettings)  # a refused setting: its reason, not a traceback
    setup_logging(settings.log_level, "uploader", settings.log_format)
    if args.command == "dead-letters":
        sys.exit(dead_letters_cli.run(args, settings))
    if args.command == "topology":
        sys.exit(topology_cli.run(args, settings))
    if args.command == "broker-users":
        sys.exit(broker_users_cli.run(args, settings))
    consume(settings)


if __name__ == "__main__":
    main()
