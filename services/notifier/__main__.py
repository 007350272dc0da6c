"""python -m services.notifier: mail each settled album until SIGTERM."""

from __future__ import annotations

from shared.broker.consumer import Consumer
from shared.broker.publisher import Publisher
from shared.config.settings import load
from shared.contracts import topology
from shared.observability import health_server, metrics
from shared.observability.readiness import service_checks
from shared.observability.store_metrics import StoreCollector
from shared.process.runtime import freeze_startup_heap, setup_logging, stop_on_signals
from shared.store import Store

from .handler import AlbumNotifier
from .mailer import SmtpMailer
from .reconnect_mail import ReconnectMailer
from .settings import NotifierSettings


def main() -> None:
    settings = load(NotifierSettings)  # a refused setting: its reason, not a traceback
    setup_logging(settings.log_level, "notifier", settings.log_format)
    stop = stop_on_signals()
    store = Store(settings.database_url)
    store.create_schema()
    metrics.serve(settings.notifier_metrics_port, settings.metrics_host, StoreCollector(store))
    mailer = SmtpMailer.from_settings(settings)
    handler = AlbumNotifier(
        store,
        mailer,
        settings.mail_from,
        settings.app_base_url,
        (settings.retry_delays, settings.max_attempts),
        claim_lease=settings.claim_lease,
    )
    # Owners whose Page Facebook stopped accepting (190) or blocked (368) are asked, once, to
    # reconnect it.
    ReconnectMailer(store, mailer, settings.mail_from, settings.app_base_url).start(stop)
    # No declare, no policies: the uploader owns the topology. Declaring the notifier's retry
    # queues would need the write right on albums.work (their dead-letter exchange), which
    # this user must not have; until the uploader declared them, the consumer waits and
    # tries again.
    # One publisher per process: the runtime sends retry copies and dead letters through it.
    publisher = Publisher(settings.amqp_url)
    consumer = Consumer(
        settings.amqp_url, handler.route(), settings.notifier_concurrency, publisher=publisher
    )
    if settings.notifier_health_port:
        health_server.serve(
            settings.health_host,
            settings.notifier_health_port,
            service_checks(store, [(topology.ALBUM_SETTLED.name, consumer)]),
        )
    freeze_startup_heap()
    try:
        consumer.run(stop)
    finally:
        publisher.close()


if __name__ == "__main__":
    main()
