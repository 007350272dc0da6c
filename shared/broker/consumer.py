"""The consumer runtime every service shares: threads for the work, one thread for the socket.

A handler gets a `Delivery` and returns an `Outcome`: messages to publish (a retry copy, a dead
letter) and then the ack. The runtime alone acks, so every message ends in exactly one of
ack (after its outgoing messages are confirmed) or back to the queue (the handler raised, or the
connection died before the ack).

Handlers run off pika's I/O thread so heartbeats keep flowing during long uploads. The I/O
thread puts each delivery on one queue that `concurrency` worker threads take from (a bare
`SimpleQueue`: no future per message, no result to wait on, since the outcome comes back
through the batch below). Finished deliveries go back to the I/O thread through
`add_callback_threadsafe`, one wake per batch (not one per message), and plain ones are acked
together where their tags allow. The I/O thread blocks until the socket or a worker has
something for it; a timer every `_STOP_CHECK_S` lets it see the stop event.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, NamedTuple

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic

from shared.broker.connection import after, label, node_of, parameters, properties
from shared.outgoing import Outgoing

log = logging.getLogger(__name__)

#: Reconnect waits grow to this cap, and start again from the first once a connection consumed.
_RECONNECT_DELAYS_S = (0.2, 0.5, 1, 2)
#: A handler that raises met an outage (the store, most likely): the message goes back to the
#: queue after a pause that doubles with each consecutive failure, up to the cap, so an outage
#: costs a few redeliveries (and the quorum queue's delivery limit is not spent in seconds).
_ERROR_PAUSES_S = (0.5, 1, 2, 4, 8, 16, 30)
#: How soon the I/O thread notices the stop event while nothing else wakes it.
_STOP_CHECK_S = 0.2


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


class _Link(NamedTuple):
    """One connection's channels: deliveries come on `channel`, outcomes go out on the
    publisher-confirmed `confirm_channel`."""

    connection: pika.BlockingConnection
    channel: BlockingChannel
    confirm_channel: BlockingChannel


#: A delivery for a worker: its connection, tag and the message.
_Job = tuple[_Link, int, Delivery]
#: A delivery a worker finished; outcome None means back to the queue.
_Finished = tuple[_Link, int, Outcome | None]


class Consumer:
    def __init__(self, url: str, queue: str, handler: Handler, concurrency: int,
                 on_connect: Callable[[BlockingChannel], None] | None = None,
                 grace_s: float = 30.0, prefetch: int | None = None) -> None:
        #: The broker's nodes in the order the next connection tries them.
        self._nodes = parameters(url)
        #: The node the last connection opened on (None before the first).
        self._node: pika.ConnectionParameters | None = None
        self._queue = queue
        self._handler = handler
        self._concurrency = concurrency
        #: Deliveries held beyond the threads: a freed thread finds its next message here instead
        #: of one ack-to-delivery round trip later (a quorum queue's cycle is milliseconds).
        self._prefetch = max(prefetch or concurrency, concurrency)
        self._on_connect = on_connect
        self._grace_s = grace_s
        #: Deliveries for the worker threads; `None` tells one thread to exit.
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        #: Guards `_in_flight`, `_finished` and `_wake_pending` (workers and the I/O thread).
        self._lock = threading.Lock()
        self._in_flight = 0
        #: Finished deliveries waiting for the I/O thread, and whether it was already woken.
        self._finished: list[_Finished] = []
        self._wake_pending = False
        #: Tags delivered on the current channel and not yet settled (I/O thread only); tags
        #: start again at 1 on each new channel.
        self._unsettled: set[int] = set()
        self._channel: BlockingChannel | None = None
        #: The connection the I/O thread serves now: workers wake it, whichever connection
        #: their delivery came on (a dead one would never run the wake).
        self._connection: pika.BlockingConnection | None = None
        self._had_consumed = False
        self.consuming = threading.Event()
        self._errors_in_a_row = 0
        #: How many connections have reached consuming (more than one means it reconnected).
        self.connects = 0

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, reconnecting with capped backoff after broker trouble."""
        workers = self._start_workers()
        try:
            self._consume_until(stop)
        finally:
            # The `None`s queue up behind any deliveries still waiting, which run first (their
            # outcomes are dropped if the connection is gone); then each worker exits.
            for _ in workers:
                self._jobs.put(None)
            for worker in workers:
                worker.join()

    def _consume_until(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._consume_once(stop)
                failures = 0
            except pika.exceptions.AMQPError as exc:
                self.consuming.clear()
                if self._node is not None:  # try the others before the node just lost
                    self._nodes = after(self._nodes, self._node)
                delay = _RECONNECT_DELAYS_S[min(failures, len(_RECONNECT_DELAYS_S) - 1)]
                failures = 0 if self._had_consumed else failures + 1
                log.warning("%s: broker connection lost (%r); reconnecting in %s s",
                            self._queue, exc, delay)
                stop.wait(delay)

    def _start_workers(self) -> list[threading.Thread]:
        # Daemons: `run` joins them on its way out, and a consumer that was never stopped
        # must not keep the interpreter from exiting.
        workers = [threading.Thread(target=self._serve, name=f"{self._queue}-worker-{n}",
                                    daemon=True)
                   for n in range(self._concurrency)]
        for worker in workers:
            worker.start()
        return workers

    def _serve(self) -> None:
        """A worker thread: take deliveries off the queue until told to stop."""
        while (job := self._jobs.get()) is not None:
            try:
                self._work(*job)
            except BaseException:  # a dead thread would quietly cut the concurrency
                log.exception("%s: worker failed outside the handler", self._queue)

    def _consume_once(self, stop: threading.Event) -> None:
        self._had_consumed = False
        connection = pika.BlockingConnection(self._nodes)
        self._node = node_of(connection)
        try:
            channel = connection.channel()
            if self._on_connect is not None:
                self._on_connect(channel)
            confirm_channel = connection.channel()
            confirm_channel.confirm_delivery()
            self._channel, self._unsettled = channel, set()
            channel.basic_qos(prefetch_count=self._prefetch)
            link = _Link(connection, channel, confirm_channel)
            self._serve_connection(connection)
            tag = channel.basic_consume(self._queue, functools.partial(self._on_message, link))
            self.consuming.set()
            self.connects += 1
            self._had_consumed = True
            log.info("%s: consuming with concurrency %d on %s", self._queue, self._concurrency,
                     label(self._node))
            self._tick(connection)
            # No time limit: a time-limited call arms and cancels a timer each time it returns
            # (each delivery, each batch of acks), some 5% of this thread's time in P2's
            # profile; `_tick` instead returns control here often enough to see `stop`.
            while not stop.is_set():
                connection.process_data_events(time_limit=None)
            self._drain(connection, channel, tag)
        finally:
            self.consuming.clear()
            if connection.is_open:
                connection.close()

    def _serve_connection(self, connection: pika.BlockingConnection) -> None:
        """On the I/O thread, as a connection starts: wakes go to it from now on. A wake sent
        to the connection before may never have run (it died first); left pending, it would
        keep every later delivery from being acked, so the finished ones are settled here
        (those of a dead channel only leave the count: the broker redelivers them)."""
        with self._lock:
            self._connection, self._wake_pending = connection, False
        self._finish_batch()

    def _tick(self, connection: pika.BlockingConnection) -> None:
        """A timer that fires every `_STOP_CHECK_S` (its call ends a `process_data_events`)."""
        connection.call_later(_STOP_CHECK_S, functools.partial(self._tick, connection))

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

    def _on_message(self, link: _Link, _channel: BlockingChannel, method: Basic.Deliver,
                    props: pika.BasicProperties, body: bytes) -> None:
        delivery = Delivery(body, props.headers or {}, bool(method.redelivered), props.message_id,
                            method.routing_key or "")
        with self._lock:
            self._in_flight += 1
        self._unsettled.add(method.delivery_tag)
        self._jobs.put((link, method.delivery_tag, delivery))

    def _work(self, link: _Link, tag: int, delivery: Delivery) -> None:
        """On a worker thread: run the handler, then hand the outcome to the I/O thread."""
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
        with self._lock:
            self._finished.append((link, tag, outcome))
            wake, self._wake_pending = not self._wake_pending, True
            connection = self._connection
        if not wake or connection is None:  # the I/O thread is already due to take this one
            return
        try:
            connection.add_callback_threadsafe(self._finish_batch)
        except Exception:  # between connections: the next one settles the batch as it starts
            with self._lock:
                self._wake_pending = False

    def _finish_batch(self) -> None:
        """On the I/O thread: settle every delivery finished since the last wake. Those with
        messages to publish (or to requeue) go one by one; the plain ones are acked with one
        `multiple` ack up to the oldest delivery still being worked on, the rest singly."""
        with self._lock:
            batch, self._finished, self._wake_pending = self._finished, [], False
        channel = self._channel
        plain: list[int] = []
        for link, tag, outcome in batch:
            if channel is None or link.channel is not channel or not channel.is_open:
                self._settled(1)  # its channel is gone, and the broker redelivers it
                continue
            if outcome is not None and not outcome.publish:
                plain.append(tag)
                continue
            self._unsettled.discard(tag)
            self._finish(link, tag, outcome)
        if plain and channel is not None:  # plain tags exist only on the current channel
            self._ack_plain(channel, plain)

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
            self._settled(len(tags))

    def _finish(self, link: _Link, tag: int, outcome: Outcome | None) -> None:
        """On the I/O thread: publish the outcome's messages with confirms, then ack."""
        channel = link.channel
        try:
            if not channel.is_open:
                return
            if outcome is None:
                channel.basic_nack(tag, requeue=True)
                return
            for message in outcome.publish:
                link.confirm_channel.basic_publish(message.exchange, message.routing_key,
                                                   message.body, properties(message),
                                                   mandatory=True)
            channel.basic_ack(tag)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            log.error("%s: could not publish the outcome (%s); message goes back", self._queue,
                      exc)
            channel.basic_nack(tag, requeue=True)
        finally:
            self._settled(1)

    def _settled(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count
