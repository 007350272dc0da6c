"""A publisher that waits for a batch's confirms together, on one kept-open connection.

pika's BlockingChannel waits for each confirm in turn (one broker round trip per message), so
this runs an asynchronous connection in its own thread and hands each caller futures instead.
Every message is persistent and published `mandatory`: a message no queue took comes back as
`Unroutable` and never counts as sent. Thread-safe: request threads share one instance.

Which confirm belongs to which publish is `Confirms`' job (one per channel: delivery tags start
again at 1 on a new channel, so what waited on the old one fails and never takes a new ack).
A caller's batch reaches the I/O thread through a list guarded by a lock, so the thread that
sees the connection die fails every batch it had been handed, sent or not: no publish is left
waiting on a loop that has stopped.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait

import pika
from pika.channel import Channel
from pika.spec import Basic

from shared.broker.confirms import Confirms
from shared.broker.connection import label, parameters, properties
from shared.broker.errors import BrokerError, Refused
from shared.contracts.outgoing import Outgoing

log = logging.getLogger(__name__)

_RECONNECT_DELAYS_S: tuple[float, ...] = (0.5, 1, 2, 5)

_Batch = tuple[Sequence[Outgoing], Sequence[Future[None]]]


class Publisher:
    def __init__(self, url: str) -> None:
        #: The broker's nodes: each connection tries the next one, and a full round of failures
        #: waits out the next reconnect delay.
        self._nodes = parameters(url, name="publisher")
        self._node = 0
        #: Nodes tried since the last connection that confirmed.
        self._tried = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        # Set by `close`; it also ends a reconnect delay at once (a stop while the broker is away).
        self._stopping = threading.Event()
        self._connection: pika.SelectConnection | None = None
        # Guarded by _lock: the connection that takes publishes (None while there is none) and
        # the batches handed to its I/O thread and not sent yet.
        self._live: pika.SelectConnection | None = None
        self._handed: list[_Batch] = []
        # The I/O thread's alone.
        self._channel: Channel | None = None
        self._confirms = Confirms()
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="publisher-io", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------

    def connected(self, wait_s: float = 0.0) -> bool:
        """Whether a connection takes publishes now (waiting up to `wait_s` for one)."""
        return self._ready.wait(wait_s)

    def publish_confirmed(
        self, messages: Sequence[Outgoing], timeout: float = 10.0, connect_wait: float = 2.0
    ) -> None:
        """Publish all messages and return once the broker has confirmed every one of them.

        Waits at most `connect_wait` for a connection (a request must not hang while the broker
        is away), then at most `timeout` for the whole batch's confirms. Raises BrokerError (or
        Unroutable) if any was not confirmed; some of the batch may then have been stored, so
        consumers must be idempotent.
        """
        if not messages:
            return
        futures = self._hand_over(messages, connect_wait)
        # One deadline for the whole batch, and the first failure ends the wait.
        done, not_done = wait(futures, timeout, return_when=FIRST_EXCEPTION)
        for future in futures:
            error = future.exception() if future in done else None
            if error is not None:
                raise error
        if not_done:
            raise BrokerError(f"no confirm within {timeout} s")

    def publish_outcomes(
        self, messages: Sequence[Outgoing], timeout: float = 10.0, connect_wait: float = 2.0
    ) -> list[BaseException | None]:
        """`publish_confirmed`, but each message's own outcome, in order: None once the broker
        confirmed it, else why not (`Refused`/`Unroutable`: the broker said no to that message;
        another BrokerError: no connection, or no confirm within `timeout` for the whole
        batch). Never raises for a message that failed: one refusal must not hide the confirmed."""
        if not messages:
            return []
        try:
            futures = self._hand_over(messages, connect_wait)
        except BrokerError as exc:
            return [exc] * len(messages)
        wait(futures, timeout)
        return [
            future.exception() if future.done() else BrokerError(f"no confirm within {timeout} s")
            for future in futures
        ]

    def _hand_over(self, messages: Sequence[Outgoing], connect_wait: float) -> list[Future[None]]:
        """Give the batch to the I/O thread; one future per message. Raises BrokerError when
        there is no connection within `connect_wait`."""
        if not self._ready.wait(connect_wait):
            raise BrokerError("broker unavailable: no connection")
        futures = [Future[None]() for _ in messages]
        with self._lock:
            connection = self._live
            if connection is None:
                raise BrokerError("broker unavailable: the connection was just lost")
            self._handed.append((messages, futures))
        try:
            connection.ioloop.add_callback_threadsafe(self._send_handed)
        except Exception:  # noqa: BLE001 - the loop is gone; losing it failed this batch
            pass
        return futures

    def close(self) -> None:
        self._stopping.set()
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.ioloop.add_callback_threadsafe(connection.close)
        elif connection is not None and not connection.is_closed:
            # Still opening (a node that took the TCP connection and has not answered), or
            # already closing: in pika 1.4, `close` fails an assertion in the I/O thread once
            # the AMQP handshake has begun, and the workflow's `abort` in every phase. Stopping
            # the loop is quiet; `_run` closes a half-open socket.
            connection.ioloop.add_callback_threadsafe(connection.ioloop.stop)
        self._thread.join(timeout=5)

    # -- I/O thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            params = self._nodes[self._node]
            self._connection = pika.SelectConnection(
                params,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_error,
                on_close_callback=self._on_connection_closed,
            )
            failed = False
            try:
                # A `close` that came between the loop's test and this connection saw the one
                # before it: nothing would stop this one's loop.
                if not self._stopping.is_set():
                    self._connection.ioloop.start()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive it, or nothing publishes
                # pika raised out of its own loop (seen: a node that reset the connection
                # between the TCP connect and the link-up, ValueError from getpeername).
                failed = True
                log.exception("publisher: the connection's I/O loop failed; connecting again")
                self._lose(BrokerError(f"connection failed: {exc!r}"))
            finally:
                # A connection left opening, or open on a loop that failed: its socket too.
                if failed or not (self._connection.is_open or self._connection.is_closed):
                    _drop_half_open(self._connection)
                # pika leaves a connection's I/O loop open once it stopped, and with it the
                # loop's wake-up socket pair: two sockets per connection, every reconnect,
                # held until the garbage collector happened to find them.
                self._connection.ioloop.close()
            self._ready.clear()
            # Whether the node refused or a connection to it died, the next node is tried next;
            # once every node was tried in vain, the reconnect delay is waited out first.
            self._node = (self._node + 1) % len(self._nodes)
            self._tried += 1
            if not self._stopping.is_set() and self._tried % len(self._nodes) == 0:
                delay = _RECONNECT_DELAYS_S[min(self._failures, len(_RECONNECT_DELAYS_S) - 1)]
                self._failures += 1
                self._stopping.wait(delay)

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        if self._stopping.is_set():  # `close` came while this connection was still opening
            connection.close()
            return
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Channel) -> None:
        # Tags start again at 1: whatever still waited on a previous channel can never be
        # confirmed now (its loss has failed it already; this is the guard).
        self._confirms.fail_all(BrokerError("channel replaced before its confirm"))
        confirms = self._confirms = Confirms()
        self._channel = channel
        channel.add_on_return_callback(functools.partial(self._on_return, confirms))
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(
            functools.partial(self._on_confirm, confirms),
            callback=lambda _frame: self._on_confirming(channel),
        )

    def _on_confirming(self, channel: Channel) -> None:
        self._failures = 0
        self._tried = 0
        with self._lock:
            self._live = channel.connection
        self._ready.set()
        log.info("publisher connected to %s", label(self._nodes[self._node]))

    def _on_connection_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        log.warning("publisher cannot connect: %s", error)
        connection.ioloop.stop()

    def _on_connection_closed(
        self, connection: pika.SelectConnection, reason: BaseException
    ) -> None:
        self._lose(BrokerError(f"connection lost: {reason}"))
        connection.ioloop.stop()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self._lose(BrokerError(f"channel closed: {reason}"))
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()

    def _lose(self, error: BrokerError) -> None:
        """No confirm will come on this channel: fail what waits for one, and what was handed
        over and not sent yet."""
        self._ready.clear()
        with self._lock:
            self._live = None
            handed, self._handed = self._handed, []
        self._channel = None
        self._confirms.fail_all(error)
        for _messages, futures in handed:
            for future in futures:
                future.set_exception(error)

    def _send_handed(self) -> None:
        with self._lock:
            handed, self._handed = self._handed, []
        for messages, futures in handed:
            self._send(messages, futures)

    def _send(self, messages: Sequence[Outgoing], futures: Sequence[Future[None]]) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            for future in futures:
                future.set_exception(BrokerError("broker unavailable: channel closed"))
            return
        for message, future in zip(messages, futures, strict=True):
            try:
                channel.basic_publish(
                    message.exchange,
                    message.routing_key,
                    message.body,
                    properties=properties(message),
                    mandatory=True,
                )
            except Exception as exc:  # noqa: BLE001 - pika encodes before it writes a byte
                # Not counted: the broker never saw it, so it takes no delivery tag.
                # Refused: sent again, it would meet the same answer.
                future.set_exception(
                    Refused(f"message {message.message_id} not sent, pika refused it: {exc!r}")
                )
                continue
            self._confirms.sent(message.message_id, future)

    def _on_return(
        self,
        confirms: Confirms,
        _ch: Channel,
        _method: Basic.Return,
        props: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        confirms.returned(props.message_id)

    def _on_confirm(self, confirms: Confirms, frame: pika.frame.Method) -> None:
        method = frame.method
        confirms.confirmed(
            method.delivery_tag, bool(method.multiple), acked=isinstance(method, Basic.Ack)
        )


def _drop_half_open(connection: pika.SelectConnection) -> None:
    """Close the socket of a connection whose loop was stopped while it was opening, or failed
    under it. pika keeps it on the workflow's connector while TCP connects, on the connector's
    stream link-up while TLS shakes hands (cancelling that closes it), then on the connection's
    transport; it offers no public way to it that works during the handshake (see `close`)."""
    transport = getattr(connection, "_transport", None)
    connector = getattr(getattr(connection, "_connection_workflow", None), "_connector", None)
    linking = getattr(connector, "_task_ref", None)
    if linking is not None:
        linking.cancel()
    for holder in (transport, connector):
        sock = getattr(holder, "_sock", None)
        if isinstance(sock, socket.socket):
            sock.close()
