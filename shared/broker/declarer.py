"""Declares the topology over AMQP for a service: at start and on every reconnect.

A queue that an older version declared with an argument policies carry now (`x-delivery-limit`
on a work queue, `x-max-length` on a dead-letter queue) makes the broker refuse the declare with
406 PRECONDITION_FAILED. Such a queue is taken as it is: its arguments are read through the
management API and, if they differ only in those keys, the queue is declared passively (a
warning says the old argument still counts; docs/broker-policies.md has the one-time move). Any
other difference is a real conflict: logged, and the broker's refusal is raised as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared.broker.management import ManagementApi, ManagementUnavailable
from shared.broker.policies import MIGRATION_DOC, leftover_line
from shared.config.settings import CommonSettings
from shared.contracts import topology

log = logging.getLogger(__name__)

PRECONDITION_FAILED = 406


class TopologyDeclarer:
    """Call it with any open channel of a connection (the consumer's `on_connect`): it declares
    on channels of its own, so a refused declare never closes the caller's channel."""

    def __init__(self, retry_delays: Iterable[int], management: ManagementApi) -> None:
        self._specs = topology.queue_specs(retry_delays)
        self._management = management

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> TopologyDeclarer:
        return cls(settings.retry_delays, ManagementApi.from_settings(settings))

    def __call__(self, channel: BlockingChannel) -> None:
        connection = channel.connection
        own = connection.channel()
        for exchange in topology.EXCHANGES:
            own.exchange_declare(exchange=exchange, exchange_type="direct", durable=True)
        for spec in self._specs:
            try:
                own.queue_declare(queue=spec.name, durable=True, arguments=spec.arguments)
            except pika.exceptions.ChannelClosedByBroker as refused:
                if refused.reply_code != PRECONDITION_FAILED:
                    raise
                self._take_as_it_is(spec, refused)
                own = connection.channel()  # the refusal closed the channel
                own.queue_declare(queue=spec.name, passive=True)
            own.queue_bind(queue=spec.name, exchange=spec.exchange, routing_key=spec.routing_key)
        own.close()

    def _take_as_it_is(
        self, spec: topology.QueueSpec, refused: pika.exceptions.ChannelClosedByBroker
    ) -> None:
        """Return if the existing queue can serve; else log why not and raise the refusal."""
        try:
            queue = self._management.queue(spec.name)
        except ManagementUnavailable as exc:
            log.error(
                "queue %s exists with other arguments (%s) and they cannot be read to see"
                " whether it can serve as it is: %s",
                spec.name,
                refused.reply_text,
                exc,
            )
            raise refused from exc
        existing = (queue or {}).get("arguments") or {}
        if queue is None or not topology.differs_only_in_policy_keys(spec.arguments, existing):
            log.error(
                "queue %s exists with arguments %s that differ from %s in more than what"
                " policies carry: it cannot be used as it is; see %s",
                spec.name,
                existing,
                spec.arguments,
                MIGRATION_DOC,
            )
            raise refused
        log.warning("%s", leftover_line(spec.name, topology.leftover_arguments(existing)))
