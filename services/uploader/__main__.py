"""python -m services.uploader: consume image uploads until SIGTERM."""

from __future__ import annotations

import functools

from shared import s3, topology
from shared.consumer import Consumer
from shared.outbox import Outbox
from shared.publisher import Publisher
from shared.runtime import setup_logging, stop_on_signals
from shared.store import Store

from .graph_client import GraphClient
from .handler import ImageUploader, Policy
from .settings import UploaderSettings


def main() -> None:
    settings = UploaderSettings()
    setup_logging(settings.log_level)
    stop = stop_on_signals()
    store = Store(settings.database_url)
    store.create_schema()
    publisher = Publisher(settings.amqp_url)
    outbox = Outbox(store, publisher)
    outbox.start_relay(stop)
    graph = GraphClient(settings.graph_api_url, settings.graph_api_version,
                        settings.facebook_page_id, settings.facebook_page_token)
    handler = ImageUploader(store, outbox, graph, s3.make_client(settings), settings.s3_bucket,
                            Policy(settings.retry_delays, settings.max_attempts))
    declare = functools.partial(topology.declare, retry_delays=settings.retry_delays,
                                delivery_limit=settings.delivery_limit)
    consumer = Consumer(settings.amqp_url, topology.IMAGE_UPLOADS.name, handler,
                        settings.uploader_concurrency, on_connect=declare,
                        grace_s=settings.shutdown_grace_s)
    consumer.run(stop)
    publisher.close()


if __name__ == "__main__":
    main()
