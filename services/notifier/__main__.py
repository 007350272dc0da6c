"""python -m services.notifier: mail each settled album until SIGTERM."""

from __future__ import annotations

import functools

from shared import topology
from shared.broker.consumer import Consumer
from shared.broker.publisher import Publisher
from shared.runtime import setup_logging, stop_on_signals
from shared.store import Store

from .handler import AlbumNotifier
from .mailer import SmtpMailer
from .settings import NotifierSettings


def main() -> None:
    settings = NotifierSettings()
    setup_logging(settings.log_level)
    stop = stop_on_signals()
    store = Store(settings.database_url)
    store.create_schema()
    mailer = SmtpMailer(settings.smtp_host, settings.smtp_port, settings.smtp_timeout_s)
    handler = AlbumNotifier(store, mailer, settings.mail_from, settings.app_base_url,
                            (settings.retry_delays, settings.max_attempts))
    declare = functools.partial(topology.declare, retry_delays=settings.retry_delays,
                                delivery_limit=settings.delivery_limit)
    # One publisher per process: the runtime sends retry copies and dead letters through it.
    publisher = Publisher(settings.amqp_url)
    try:
        Consumer(settings.amqp_url, handler.route(), settings.notifier_concurrency,
                 on_connect=declare, publisher=publisher).run(stop)
    finally:
        publisher.close()


if __name__ == "__main__":
    main()
