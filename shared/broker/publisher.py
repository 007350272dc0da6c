"""A publisher that waits for a batch's confirms together, on one kept-open connection.

pika's BlockingChannel waits for each confirm in turn (one broker round trip per message), so
this runs an asynchronous connection in its own thread and hands each caller futures instead.
Every message is persistent and published `mandatory`: a message no queue took comes back as
`Unroutable` and never counts as sent. Thread-safe: request threads share one instance.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, wait
from concurrent.futures import TimeoutError as FutureTimeout

import pika
from pika.channel import Channel
from pika.spec import Basic

from shared.broker.connection import label, parameters, properties
from shared.broker.errors import BrokerError, Refused, Unroutable
from shared.outgoing import Outgoing

log = logging.getLogger(__name__)

_RECONNECT_DELAYS_S = (0.5, 1, 2, 5)


class Publisher:
    def __init__(self, url: str) -> None:
        #: The broker's nodes: each connection tries the next one, and a full round of failures
        #: waits out the next reconnect delay.
        self._nodes = parameters(url)
        self._node = 0
        #: Nodes tried since the last connection that confirmed.
        self._tried = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None
        self._next_tag = 1
        self._pending: dict[int, tuple[Future[None], str]] = {}
        self._returned: set[str] = set()
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="publisher-io", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------

    def publish(self, messages: Sequence[Outgoing], timeout: float = 10.0,
                connect_wait: float = 2.0) -> None:
        """Publish all messages and return once the broker has confirmed every one of them.

        Waits at most `connect_wait` for a connection (a request must not hang while the broker
        is away). Raises BrokerError (or Unroutable) if any was not confirmed within `timeout`;
        some of the batch may then have been stored, so consumers must be idempotent.
        """
        if not messages:
            return
        if not self._ready.wait(connect_wait):
            raise BrokerError("broker unavailable: no connection")
        futures = [Future[None]() for _ in messages]
        connection = self._connection
        if connection is None:
            raise BrokerError("broker unavailable: no connection")
        try:
            connection.ioloop.add_callback_threadsafe(lambda: self._send(messages, futures))
        except Exception as exc:  # the loop is gone: the connection just died
            raise BrokerError(f"broker unavailable: {exc}") from exc
        for future in futures:
            try:
                future.result(timeout)
            except FutureTimeout:
                raise BrokerError(f"no confirm within {timeout} s") from None

    def publish_each(self, messages: Sequence[Outgoing], timeout: float = 10.0,
                     connect_wait: float = 2.0) -> list[BaseException | None]:
        """`publish`, but each message's own outcome, in order: None once the broker confirmed
        it, else why not (`Refused`/`Unroutable`: the broker said no to that message; another
        BrokerError: no connection, or no confirm within `timeout` for the whole batch).
        Never raises for a message that failed: one refusal must not hide the confirmed."""
        if not messages:
            return []
        connection = self._connection if self._ready.wait(connect_wait) else None
        if connection is None:
            return [BrokerError("broker unavailable: no connection")] * len(messages)
        futures = [Future[None]() for _ in messages]
        try:
            connection.ioloop.add_callback_threadsafe(lambda: self._send(messages, futures))
        except Exception as exc:  # the loop is gone: the connection just died
            return [BrokerError(f"broker unavailable: {exc}")] * len(messages)
        wait(futures, timeout)
        return [future.exception() if future.done()
                else BrokerError(f"no confirm within {timeout} s") for future in futures]

    def close(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.ioloop.add_callback_threadsafe(connection.close)
        self._thread.join(timeout=5)

    # -- I/O thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            params = self._nodes[self._node]
            self._connection = pika.SelectConnection(
                params,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_error,
                on_close_callback=self._on_connection_closed,
            )
            self._connection.ioloop.start()
            self._ready.clear()
            # Whether the node refused or a connection to it died, the next node is tried next;
            # once every node was tried in vain, the reconnect delay is waited out first.
            self._node = (self._node + 1) % len(self._nodes)
            self._tried += 1
            if not self._stopping and self._tried % len(self._nodes) == 0:
                delay = _RECONNECT_DELAYS_S[min(self._failures, len(_RECONNECT_DELAYS_S) - 1)]
                self._failures += 1
                threading.Event().wait(delay)

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Channel) -> None:
        self._channel = channel
        self._next_tag = 1
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._on_confirming())

    def _on_confirming(self) -> None:
        self._failures = 0
        self._tried = 0
        self._ready.set()
        log.info("publisher connected to %s", label(self._nodes[self._node]))

    def _on_connection_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        log.warning("publisher cannot connect: %s", error)
        connection.ioloop.stop()

    def _on_connection_closed(
        self, connection: pika.SelectConnection, reason: BaseException
    ) -> None:
        self._ready.clear()
        self._channel = None
        self._fail_pending(BrokerError(f"connection lost: {reason}"))
        connection.ioloop.stop()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        self._ready.clear()
        self._channel = None
        self._fail_pending(BrokerError(f"channel closed: {reason}"))
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()

    def _send(self, messages: Sequence[Outgoing], futures: Sequence[Future[None]]) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            for future in futures:
                future.set_exception(BrokerError("broker unavailable: channel closed"))
            return
        for message, future in zip(messages, futures, strict=True):
            self._pending[self._next_tag] = (future, message.message_id)
            self._next_tag += 1
            channel.basic_publish(
                message.exchange, message.routing_key, message.body,
                properties=properties(message), mandatory=True,
            )

    def _on_return(self, _ch: Channel, _method: Basic.Return, props: pika.BasicProperties,
                   _body: bytes) -> None:
        # A return always arrives before the confirm of the same message.
        if props.message_id:
            self._returned.add(props.message_id)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple else [
            method.delivery_tag]
        for tag in tags:
            entry = self._pending.pop(tag, None)
            if entry is None:
                continue
            future, message_id = entry
            if message_id in self._returned:
                self._returned.discard(message_id)
                future.set_exception(Unroutable(f"message {message_id} reached no queue"))
            elif acked:
                future.set_result(None)
            else:
                future.set_exception(Refused(f"broker refused message {message_id}"))

    def _fail_pending(self, error: BrokerError) -> None:
        pending, self._pending = self._pending, {}
        self._returned.clear()
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(error)
