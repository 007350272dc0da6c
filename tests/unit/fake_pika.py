"""A hand-driven stand-in for pika's SelectConnection, to test the publisher's confirm matching.

The publisher's I/O thread runs `FakeLoop.start`; the test plays the broker through
`FakeBroker`: it sees what was published, and acks, nacks, returns or drops the connection.
Like RabbitMQ, a channel numbers the publishes it received from 1 (a publish pika refused to
encode never reached the broker, so it gets no number), and like pika, a callback added to a
loop that has stopped never runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.frame
from pika.spec import Basic, Confirm

_STOP = object()


class FakeLoop:
    def __init__(self) -> None:
        self._calls: queue.Queue[Any] = queue.Queue()

    def start(self) -> None:
        while (call := self._calls.get()) is not _STOP:
            call()

    def stop(self) -> None:
        self._calls.put(_STOP)

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self._calls.put(callback)

    def close(self) -> None:
        pass


class FakeChannel:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.is_open = True
        self.published: list[tuple[int, pika.BasicProperties]] = []
        self._on_confirm: Callable[[pika.frame.Method], None] | None = None
        self._on_return: Callable[..., None] | None = None
        self._on_close: list[Callable[..., None]] = []

    # pika's Channel API, as the publisher uses it
    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        self._on_return = callback

    def add_on_close_callback(self, callback: Callable[..., None]) -> None:
        self._on_close.append(callback)

    def confirm_delivery(
        self,
        ack_nack_callback: Callable[[pika.frame.Method], None],
        callback: Callable[[Any], None] | None = None,
    ) -> None:
        self._on_confirm = ack_nack_callback
        if callback is not None:
            self.connection.ioloop.add_callback_threadsafe(
                lambda: callback(pika.frame.Method(1, Confirm.SelectOk()))
            )

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        mandatory: bool = False,
    ) -> None:
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
        # What pika does before a byte is written: encode the frames (may raise).
        pika.frame.Header(1, len(body), properties).marshal()
        self.published.append((len(self.published) + 1, properties))

    # the broker's side, called from the test thread
    def tag_of(self, message_id: str, nth: int = 0) -> int:
        tags = [tag for tag, props in self.published if props.message_id == message_id]
        return tags[nth]

    def ack(self, tag: int, multiple: bool = False, nack: bool = False) -> None:
        method = Basic.Nack(tag, multiple) if nack else Basic.Ack(tag, multiple)
        assert self._on_confirm is not None
        confirm = self._on_confirm
        self.connection.ioloop.add_callback_threadsafe(
            lambda: confirm(pika.frame.Method(1, method))
        )

    def give_back(self, tag: int) -> None:
        """A basic.return of the message published with this tag (unroutable)."""
        props = self.published[tag - 1][1]
        assert self._on_return is not None
        on_return = self._on_return
        self.connection.ioloop.add_callback_threadsafe(
            lambda: on_return(self, Basic.Return(312, "NO_ROUTE", "", "q"), props, b"")
        )

    def closed(self, reason: BaseException) -> None:
        """On the I/O thread: the channel closes, as pika reports it."""
        self.is_open = False
        for callback in self._on_close:
            callback(self, reason)


class FakeConnection:
    def __init__(
        self,
        broker: FakeBroker,
        on_open_callback: Callable[..., None],
        on_close_callback: Callable[..., None],
    ) -> None:
        self.ioloop = FakeLoop()
        self.is_open = False
        #: pika's too: neither open nor closed while it opens.
        self.is_closed = False
        self.channels: list[FakeChannel] = []
        self._on_open = on_open_callback
        self._on_close = on_close_callback
        self.ioloop.add_callback_threadsafe(self._open)

    def _open(self) -> None:
        self.is_open = True
        self._on_open(self)

    def channel(self, on_open_callback: Callable[[FakeChannel], None]) -> None:
        channel = FakeChannel(self)
        self.channels.append(channel)
        self.ioloop.add_callback_threadsafe(lambda: on_open_callback(channel))

    def close(self) -> None:
        self.ioloop.add_callback_threadsafe(lambda: self._lost(ConnectionError("closed")))

    def drop(self) -> None:
        """The TCP connection is lost (a broker crash), from the test thread."""
        self.ioloop.add_callback_threadsafe(lambda: self._lost(ConnectionError("lost")))

    def _lost(self, reason: BaseException) -> None:
        if not self.is_open:
            return
        self.is_open, self.is_closed = False, True
        for channel in self.channels:
            if channel.is_open:
                channel.closed(reason)
        self._on_close(self, reason)


class FakeBroker:
    """Stands in for `pika.SelectConnection`; keeps every connection the publisher opened."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        _params: Any,
        on_open_callback: Callable[..., None],
        on_open_error_callback: Callable[..., None],
        on_close_callback: Callable[..., None],
    ) -> FakeConnection:
        connection = FakeConnection(self, on_open_callback, on_close_callback)
        with self._lock:
            self.connections.append(connection)
        return connection

    def channel(self, n: int = -1, timeout: float = 5.0) -> FakeChannel:
        """The publisher's channel on its n-th connection, once it is open."""
        channel: FakeChannel = wait_until(lambda: self._channel(n), timeout)
        return channel

    def _channel(self, n: int) -> FakeChannel | None:
        with self._lock:
            if not self.connections or (n >= 0 and len(self.connections) <= n):
                return None
            channels = self.connections[n].channels
        return channels[-1] if channels else None


def wait_until(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"not within {timeout} s: {probe}")
