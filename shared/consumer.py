"""The consumer runtime every service shares: threads for the work, one thread for the socket.

A handler gets a `Delivery` and returns an `Outcome`: messages to publish (a retry copy, a dead
letter) and then the ack. The runtime alone acks, so every message ends in exactly one of
ack (after its outgoing messages are confirmed) or back to the queue (the handler raised, or the
connection died before the ack). Handlers run off pika's I/O thread so heartbeats keep flowing
during long uploads; acks go back to that thread through `add_callback_threadsafe`, one wake
per batch of finished deliveries (not one per message), acked together where their tags allow.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic

from shared.broker import Outgoing, parameters

log = logging.getLogger(__name__)

#: Reconnect waits grow to this cap, and start again from the first once a connection consumed.
_RECONNECT_DELAYS_S = (0.2, 0.5, 1, 2)
#: A handler that raises met an outage (the store, most likely): the message goes back to the
#: queue after a pause that doubles with each consecutive failure, up to the cap, so an outage
#: costs a few redeliveries (and the quorum queue's delivery limit is not spent in seconds).
_ERROR_PAUSES_S = (0.5, 1, 2, 4, 8, 16, 30)


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: Mapping[str, Any]
    redelivered: bool
    message_id: str | None
    routing_key: str


@dataclass(frozen=True)
class Outcome:
    """Publish these (with confirms), then ack the delivery."""

    publish: Sequence[Outgoing] = field(default_factory=tuple)


Handler = Callable[[Delivery], Outcome]


class Consumer:
    def __init__(self, url: str, queue: str, handler: Handler, concurrency: int,
                 on_connect: Callable[[BlockingChannel], None] | None = None,
                 grace_s: float = 30.0, prefetch: int | None = None) -> None:
        self._params = parameters(url)
        self._queue = queue
        self._handler = handler
        self._concurrency = concurrency
        #: Deliveries held beyond the threads: a freed thread finds its next message here instead
        #: of one ack-to-delivery round trip later (a quorum queue's cycle is milliseconds).
        self._prefetch = max(prefetch or concurrency, concurrency)
        self._on_connect = on_connect
        self._grace_s = grace_s
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"{queue}-worker")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        #: Finished deliveries waiting for the I/O thread, and whether it was already woken.
        self._finished: list[tuple[BlockingChannel, BlockingChannel, int, Outcome | None]] = []
        self._wake_pending = False
        #: Tags delivered on the current channel and not yet settled (I/O thread only); tags
        #: start again at 1 on each new channel.
        self._unsettled: set[int] = set()
        self._channel: BlockingChannel | None = None
        self._had_consumed = False
        self.consuming = threading.Event()
        self._errors_in_a_row = 0
        #: How many connections have reached consuming (more than one means it reconnected).
        self.connects = 0

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, reconnecting with capped backoff after broker trouble."""
        failures = 0
        while not stop.is_set():
            try:
                self._consume_once(stop)
                failures = 0
            except pika.exceptions.AMQPError as exc:
                self.consuming.clear()
                delay = _RECONNECT_DELAYS_S[min(failures, len(_RECONNECT_DELAYS_S) - 1)]
                failures = 0 if self._had_consumed else failures + 1
                log.warning("%s: broker connection lost (%r); reconnecting in %s s",
                            self._queue, exc, delay)
                stop.wait(delay)
        self._executor.shutdown(wait=True)

    def _consume_once(self, stop: threading.Event) -> None:
        self._had_consumed = False
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            if self._on_connect is not None:
                self._on_connect(channel)
            confirm_channel = connection.channel()
            confirm_channel.confirm_delivery()
            self._channel, self._unsettled = channel, set()
            channel.basic_qos(prefetch_count=self._prefetch)
            on_message = functools.partial(self._on_message, connection, confirm_channel)
            tag = channel.basic_consume(self._queue, on_message)
            self.consuming.set()
            self.connects += 1
            self._had_consumed = True
            log.info("%s: consuming with concurrency %d", self._queue, self._concurrency)
            while not stop.is_set():
                connection.process_data_events(time_limit=0.2)
            self._drain(connection, channel, tag)
        finally:
            self.consuming.clear()
            if connection.is_open:
                connection.close()

    def _drain(self, connection: pika.BlockingConnection, channel: BlockingChannel,
               tag: str) -> None:
        """Stop taking messages, then let in-flight ones finish and be acked, within the grace."""
        channel.basic_cancel(tag)
        deadline = time.monotonic() + self._grace_s
        while self._in_flight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        if self._in_flight:
            log.warning("%s: %d messages still in flight after %s s; they will be redelivered",
                        self._queue, self._in_flight, self._grace_s)

    def _on_message(self, connection: pika.BlockingConnection, confirm_channel: BlockingChannel,
                    channel: BlockingChannel, method: Basic.Deliver,
                    props: pika.BasicProperties, body: bytes) -> None:
        delivery = Delivery(body, props.headers or {}, bool(method.redelivered), props.message_id,
                            method.routing_key or "")
        with self._in_flight_lock:
            self._in_flight += 1
        self._unsettled.add(method.delivery_tag)
        self._executor.submit(self._work, connection, channel, confirm_channel,
                              method.delivery_tag, delivery)

    def _work(self, connection: pika.BlockingConnection, channel: BlockingChannel,
              confirm_channel: BlockingChannel, tag: int, delivery: Delivery) -> None:
        try:
            outcome: Outcome | None = self._handler(delivery)
            self._errors_in_a_row = 0
        except Exception:
            self._errors_in_a_row += 1
            pause = _ERROR_PAUSES_S[min(self._errors_in_a_row, len(_ERROR_PAUSES_S)) - 1]
            log.exception("%s: handler failed; message goes back to the queue in %s s",
                          self._queue, pause)
            time.sleep(pause)
            outcome = None
        with self._in_flight_lock:
            self._finished.append((channel, confirm_channel, tag, outcome))
            wake, self._wake_pending = not self._wake_pending, True
        if not wake:  # the I/O thread is already due to take this one with the batch
            return
        try:
            connection.add_callback_threadsafe(self._finish_batch)
        except Exception:  # the connection is gone: the broker redelivers the messages
            with self._in_flight_lock:
                lost, self._finished, self._wake_pending = self._finished, [], False
            for _ in lost:
                self._done()

    def _finish_batch(self) -> None:
        """On the I/O thread: settle every delivery finished since the last wake. Those with
        messages to publish (or to requeue) go one by one; the plain ones are acked with one
        `multiple` ack up to the oldest delivery still being worked on, the rest singly."""
        with self._in_flight_lock:
            batch, self._finished, self._wake_pending = self._finished, [], False
        plain: dict[BlockingChannel, list[int]] = {}
        for channel, confirm_channel, tag, outcome in batch:
            current = channel.is_open and channel is self._channel
            if current and outcome is not None and not outcome.publish:
                plain.setdefault(channel, []).append(tag)
                continue
            if current:
                self._unsettled.discard(tag)
            self._finish(channel, confirm_channel, tag, outcome)
        for channel, tags in plain.items():
            self._ack_plain(channel, tags)

    def _ack_plain(self, channel: BlockingChannel, tags: list[int]) -> None:
        try:
            self._unsettled.difference_update(tags)
            oldest = min(self._unsettled, default=None)
            below = [tag for tag in tags if oldest is None or tag < oldest]
            if below:
                channel.basic_ack(max(below), multiple=True)
            for tag in tags:
                if oldest is not None and tag > oldest:
                    channel.basic_ack(tag)
        finally:
            for _ in tags:
                self._done()

    def _finish(self, channel: BlockingChannel, confirm_channel: BlockingChannel, tag: int,
                outcome: Outcome | None) -> None:
        """On the I/O thread: publish the outcome's messages with confirms, then ack."""
        try:
            if not channel.is_open:
                return
            if outcome is None:
                channel.basic_nack(tag, requeue=True)
                return
            for message in outcome.publish:
                confirm_channel.basic_publish(message.exchange, message.routing_key,
                                              message.body, message.properties(), mandatory=True)
            channel.basic_ack(tag)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            log.error("%s: could not publish the outcome (%s); message goes back", self._queue,
                      exc)
            channel.basic_nack(tag, requeue=True)
        finally:
            self._done()

    def _done(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1
