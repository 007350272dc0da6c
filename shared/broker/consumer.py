"""The consumer runtime every service shares: threads for the work, one thread for the socket.

Each work queue has a `Route` (`shared.policies.fate`): its message type, its handler and retry
policy. A worker thread decodes each delivery and runs the handler through
`shared.policies.fate.decide`, which says the message's fate: ack, a retry copy to a delay tier, or
a dead letter. The worker publishes those copies itself through the process's `Publisher` (confirms
with a timeout), off pika's I/O thread, and hands the I/O thread only the ack: a quorum queue
without a leader can stall a confirm, never the I/O thread. A copy that was not confirmed in time
(or was refused) sends the delivery back to its queue (nack, requeue); a connection that died before
the ack has the broker redeliver it.

Handlers run off pika's I/O thread so heartbeats keep flowing during long uploads. The I/O
thread puts each delivery on one queue that `concurrency` worker threads take from (a bare
`SimpleQueue`: no future per message, no result to wait on, since the ack comes back
through the batch below). Finished deliveries go back to the I/O thread through
`add_callback_threadsafe`, one wake per batch (not one per message), and acked together where
their tags allow. The I/O thread blocks until the socket or a worker has something for it; a
timer every `_STOP_CHECK_S` lets it see the stop event.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic

from shared.broker.connection import after, label, node_of, parameters
from shared.broker.errors import BrokerError
from shared.broker.publisher import Publisher
from shared.observability import log_context, metrics
from shared.policies.fate import Delivery, Fate, Route, decide

__all__ = ["Consumer", "Delivery", "Route"]

log = logging.getLogger(__name__)

#: Reconnect waits grow to this cap, and start again from the first once a connection consumed.
_RECONNECT_DELAYS_S = (0.2, 0.5, 1, 2)
#: How long a worker waits for the broker to confirm a delivery's retry copy or dead letter.
_PUBLISH_TIMEOUT_S = 10.0
#: How soon the I/O thread notices the stop event while nothing else wakes it.
_STOP_CHECK_S = 0.2


class _Link(NamedTuple):
    """One connection and the channel its deliveries come on."""

    connection: pika.BlockingConnection
    channel: BlockingChannel


#: A delivery for a worker: its connection, tag and the message.
_Job = tuple[_Link, int, Delivery]
#: A delivery a worker finished: True to ack it, False to send it back to the queue.
_Finished = tuple[_Link, int, bool]


class Consumer:
    """Consume `route.queue`. `publisher` is the process's one publisher (the outbox's too);
    without one the consumer opens its own while it runs."""

    def __init__(
        self,
        url: str,
        route: Route[Any],
        concurrency: int,
        on_connect: Callable[[BlockingChannel], None] | None = None,
        grace_s: float = 30.0,
        prefetch: int | None = None,
        publisher: Publisher | None = None,
        publish_timeout_s: float = _PUBLISH_TIMEOUT_S,
    ) -> None:
        self._url = url
        #: The broker's nodes in the order the next connection tries them.
        self._nodes = parameters(url, name=f"consumer {route.queue.name}")
        #: The node the last connection opened on (None before the first).
        self._node: pika.ConnectionParameters | None = None
        self._route = route
        self._queue = route.queue.name
        metrics.declare_queue(self._queue)
        self._publisher = publisher
        self._publish_timeout_s = publish_timeout_s
        self._concurrency = concurrency
        #: Deliveries the broker may hand over at once: the threads', unless a route asks for
        #: more (no service does: docs/fair-turns.md, "One delivery per upload", says why).
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
        #: Set once the consumer drains to stop: deliveries not started yet go back.
        self._stopping = threading.Event()
        self.consuming = threading.Event()
        #: How many connections have reached consuming (more than one means it reconnected).
        self.connects = 0

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, reconnecting with capped backoff after broker trouble."""
        own_publisher = self._publisher is None
        if self._publisher is None:
            self._publisher = Publisher(self._url)
        workers = self._start_workers()
        try:
            self._consume_until(stop)
        finally:
            # The `None`s queue up behind any deliveries still waiting, which go back unstarted
            # (`_serve`); then each worker exits.
            for _ in workers:
                self._jobs.put(None)
            for worker in workers:
                worker.join()
            if own_publisher:
                self._publisher.close()
                self._publisher = None

    def _consume_until(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._consume_once(stop)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - ended, the service would consume nothing
                self.consuming.clear()
                if self._node is not None:  # try the others before the node just lost
                    self._nodes = after(self._nodes, self._node)
                delay = _RECONNECT_DELAYS_S[min(failures, len(_RECONNECT_DELAYS_S) - 1)]
                failures = 0 if self._had_consumed else failures + 1
                # pika can raise other than its own errors too (seen: ValueError from
                # getpeername, a node resetting the connection as it came back): its trace.
                log.warning(
                    "%s: broker connection lost (%r); reconnecting in %s s",
                    self._queue,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, pika.exceptions.AMQPError),
                )
                stop.wait(delay)

    def _start_workers(self) -> list[threading.Thread]:
        # Daemons: `run` joins them on its way out, and a consumer that was never stopped
        # must not keep the interpreter from exiting.
        workers = [
            threading.Thread(target=self._serve, name=f"{self._queue}-worker-{n}", daemon=True)
            for n in range(self._concurrency)
        ]
        for worker in workers:
            worker.start()
        return workers

    def _serve(self) -> None:
        """A worker thread: take deliveries off the queue until told to stop. A delivery held
        (prefetched) while the process stops, or whose channel is known dead, is not started:
        it goes back to the queue (or the broker redelivers it), rather than be cut off when
        the grace runs out or run a second time beside its redelivery."""
        while (job := self._jobs.get()) is not None:
            link, tag, _delivery = job
            if self._stopping.is_set() or not link.channel.is_open:
                self._hand_back(link, tag, ack=False)
                continue
            try:
                self._work(*job)
            except BaseException:  # a dead thread would quietly cut the concurrency
                log.exception("%s: worker failed outside the handler", self._queue)

    def _consume_once(self, stop: threading.Event) -> None:
        self._had_consumed = False
        connection = self._connect(stop)
        if connection is None:
            return
        self._node = node_of(connection)
        try:
            channel = connection.channel()
            if self._on_connect is not None:
                self._on_connect(channel)
            self._channel, self._unsettled = channel, set()
            channel.basic_qos(prefetch_count=self._prefetch)
            link = _Link(connection, channel)
            self._serve_connection(connection)
            tag = channel.basic_consume(self._queue, functools.partial(self._on_message, link))
            self.consuming.set()
            self.connects += 1
            self._had_consumed = True
            log.info(
                "%s: consuming with concurrency %d on %s",
                self._queue,
                self._concurrency,
                label(self._node),
            )
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

    def _connect(self, stop: threading.Event) -> pika.BlockingConnection | None:
        """A connection to the first node that answers, or None once `stop` is set. A node
        that takes the TCP connection and never answers AMQP holds the attempt for pika's
        stack timeout (10 s a node): a stopping process does not wait it out. The attempt
        runs on a thread of its own; left behind, it closes its connection if it opens."""
        attempt: Future[pika.BlockingConnection] = Future()

        def connect() -> None:
            try:
                attempt.set_result(pika.BlockingConnection(self._nodes))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                attempt.set_exception(exc)

        threading.Thread(target=connect, name=f"{self._queue}-connect", daemon=True).start()
        while not stop.is_set():
            try:
                return attempt.result(timeout=_STOP_CHECK_S)
            except TimeoutError:
                continue
        attempt.add_done_callback(_close_if_opened)
        return None

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

    def _drain(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, tag: str
    ) -> None:
        """Stop taking messages, then let in-flight ones finish and be acked, within the grace.
        The ones no thread has started go back to the queue now, not once a thread frees: an
        upload can outlast the grace, and another consumer can take them meanwhile."""
        self._stopping.set()
        channel.basic_cancel(tag)
        self._give_back_held()
        deadline = time.monotonic() + self._grace_s
        while self._in_flight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        if self._in_flight:
            log.warning(
                "%s: %d messages still in flight after %s s; they will be redelivered",
                self._queue,
                self._in_flight,
                self._grace_s,
            )

    def _give_back_held(self) -> None:
        """On the I/O thread, once the consumer is cancelled (pika sends back what had not
        reached the callback yet): send back every delivery still waiting for a worker. One a
        worker took just before this reads `_stopping` after, and goes back too (`_serve`)."""
        exits = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except Empty:
                break
            if job is None:  # a worker's exit (none today: `run` queues them after): kept
                exits += 1
                continue
            self._hand_back(job[0], job[1], ack=False)
        for _ in range(exits):
            self._jobs.put(None)
        self._finish_batch()

    def _on_message(
        self,
        link: _Link,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(
            body,
            props.headers or {},
            bool(method.redelivered),
            props.message_id,
            method.routing_key or "",
        )
        with self._lock:
            self._in_flight += 1
        self._unsettled.add(method.delivery_tag)
        self._jobs.put((link, method.delivery_tag, delivery))

    def _work(self, link: _Link, tag: int, delivery: Delivery) -> None:
        """On a worker thread: decide the message's fate, publish what it says, then hand the
        ack (or the requeue) to the I/O thread."""
        # Every line the handler and the runtime log for this delivery carries its ids.
        bound = log_context.bind_message(delivery.body, delivery.headers, delivery.message_id)
        started = time.monotonic()
        try:
            fate = decide(self._route, delivery)
            ack = self._publish(fate)
            if ack:  # a fate that goes back to the queue is decided again later
                metrics.count_fate(self._queue, fate.outcome, fate.code, time.monotonic() - started)
        except Exception:  # decide handles the handler's errors; this is a bug of ours
            log.exception("%s: could not decide a message's fate; it goes back", self._queue)
            ack = False
        finally:
            log_context.unbind(bound)
        self._hand_back(link, tag, ack)

    def _hand_back(self, link: _Link, tag: int, ack: bool) -> None:
        """Give a finished delivery to the I/O thread: to ack it, or to send it back."""
        with self._lock:
            self._finished.append((link, tag, ack))
            wake, self._wake_pending = not self._wake_pending, True
            connection = self._connection
        if not wake or connection is None:  # the I/O thread is already due to take this one
            return
        try:
            connection.add_callback_threadsafe(self._finish_batch)
        except Exception:  # between connections: the next one settles the batch as it starts
            with self._lock:
                self._wake_pending = False

    def _publish(self, fate: Fate) -> bool:
        """Publish the fate's messages with confirms; False if they were not all confirmed in
        time (the delivery then goes back to its queue, and the copies that did get through
        are duplicates the handlers absorb)."""
        if not fate.outgoing:
            return True
        publisher = self._publisher
        if publisher is None:
            return False
        try:
            publisher.publish_confirmed(fate.outgoing, timeout=self._publish_timeout_s)
            return True
        except BrokerError as exc:
            log.error(
                "%s: could not publish the message's %s (%s); it goes back",
                self._queue,
                fate.kind,
                exc,
            )
            return False

    def _finish_batch(self) -> None:
        """On the I/O thread: settle every delivery finished since the last wake. Those to ack
        are acked with one `multiple` ack up to the oldest delivery still being worked on, the
        rest singly; those to send back are nacked one by one."""
        with self._lock:
            batch, self._finished, self._wake_pending = self._finished, [], False
        channel = self._channel
        plain: list[int] = []
        for link, tag, ack in batch:
            if channel is None or link.channel is not channel or not channel.is_open:
                self._settled(1)  # its channel is gone, and the broker redelivers it
                continue
            if ack:
                plain.append(tag)
                continue
            self._unsettled.discard(tag)
            self._requeue(channel, tag)
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

    def _requeue(self, channel: BlockingChannel, tag: int) -> None:
        try:
            channel.basic_nack(tag, requeue=True)
        finally:
            self._settled(1)

    def _settled(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count


def _close_if_opened(attempt: Future[pika.BlockingConnection]) -> None:
    """A connection attempt nobody waits for any more: close what it opened."""
    if attempt.exception() is None:
        attempt.result().close()
