"""Dramatiq and Celery set up the way the services use RabbitMQ: quorum queues, confirms on.

Both peers default to classic queues; a quorum queue confirms later (a Raft commit and an fsync
on the way), so the peers get the services' queue type to make the comparison like for like.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

QUORUM = {"x-queue-type": "quorum"}


def dramatiq_broker(url: str, confirm_delivery: bool) -> Any:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    class QuorumRabbitmqBroker(RabbitmqBroker):  # type: ignore[misc]
        """Dramatiq's work and delay queues as quorum queues (its dead-letter .XQ stays classic:
        its fixed 7-day TTL is Dramatiq's own design, not what is measured)."""

        def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
            return {**super()._build_queue_arguments(queue_name), **QUORUM}

    return QuorumRabbitmqBroker(url=url, confirm_delivery=confirm_delivery)


def celery_url(amqp_url: str) -> str:
    """pika's amqp:// URL as Celery's py-amqp transport spells it."""
    return urlunsplit(urlsplit(amqp_url)._replace(scheme="pyamqp"))


def celery_app(amqp_url: str, queue: str, confirm_publish: bool) -> Any:
    from celery import Celery
    from kombu import Queue

    app = Celery("bench", broker=celery_url(amqp_url))
    app.conf.update(
        broker_transport_options={"confirm_publish": confirm_publish},
        task_queues=[Queue(queue, queue_arguments=QUORUM)],
        task_default_queue=queue,
        task_ignore_result=True,
        task_acks_late=True,  # ack after the task ran, as our runtime and raw pika do
        # prefetch = multiplier x threads: with -c N this is the N our runtime uses.
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app
