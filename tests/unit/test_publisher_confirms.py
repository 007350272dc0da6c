"""The publisher matches each confirm to its own publish, on a hand-driven fake pika.

The hazards: delivery tags restart at 1 on every channel, so a confirm of one channel must never
settle a publish of another; a publish pika refuses to encode never reaches the broker and must
not shift the numbering; a return names a message id, which two copies may share; a publish must
never wait longer than its timeout, whatever the connection does meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pika
import pytest

from shared.broker import publisher as publisher_module
from shared.broker.errors import BrokerError, Unroutable
from shared.broker.publisher import Publisher
from shared.contracts.outgoing import Outgoing

from .fake_pika import FakeBroker, FakeChannel, wait_until

URL = "amqp://guest:guest@fake:5672/%2F"


@pytest.fixture()
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(pika, "SelectConnection", fake)
    monkeypatch.setattr(publisher_module, "_RECONNECT_DELAYS_S", (0.01,))
    return fake


@pytest.fixture()
def publisher(broker: FakeBroker) -> Iterator[Publisher]:
    publisher = Publisher(URL)
    yield publisher
    publisher.close()


@pytest.fixture()
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def message(body: bytes = b"x", **headers: object) -> Outgoing:
    return Outgoing("albums.work", "image.upload", body, headers=headers)


def publishing(
    pool: ThreadPoolExecutor,
    publisher: Publisher,
    messages: Sequence[Outgoing],
    timeout: float = 5.0,
    connect_wait: float = 5.0,
) -> Future[None]:
    return pool.submit(publisher.publish_confirmed, messages, timeout, connect_wait)


def published(channel: FakeChannel, count: int) -> None:
    wait_until(lambda: len(channel.published) >= count)


def test_a_confirm_settles_only_its_own_publish(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    one, two = message(b"1"), message(b"2")
    first = publishing(pool, publisher, [one])
    channel = broker.channel(0)
    published(channel, 1)
    second = publishing(pool, publisher, [two])
    published(channel, 2)
    channel.ack(channel.tag_of(two.message_id))
    assert second.result(2) is None
    assert not first.done()
    channel.ack(channel.tag_of(one.message_id))
    assert first.result(2) is None


def test_pending_confirms_fail_with_their_channel_and_never_match_the_next_ones_acks(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    old, new = message(b"old"), message(b"new")
    before = publishing(pool, publisher, [old])
    published(broker.channel(0), 1)
    broker.connections[0].drop()
    with pytest.raises(BrokerError, match="lost"):
        before.result(2)
    channel = broker.channel(1)
    after = publishing(pool, publisher, [new])
    published(channel, 1)
    assert channel.tag_of(new.message_id) == 1  # the same tag the old publish had
    channel.ack(1)
    assert after.result(2) is None


def test_a_publish_made_while_the_channel_reopens_goes_out_on_the_new_one(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    first = broker.channel(0)
    broker.connections[0].drop()
    wait_until(lambda: not first.is_open)
    later = message(b"later")
    future = publishing(pool, publisher, [later], connect_wait=5)
    channel = broker.channel(1)
    published(channel, 1)
    channel.ack(channel.tag_of(later.message_id))
    assert future.result(2) is None


def test_acks_and_nacks_with_multiple_settle_exactly_the_tags_up_to_theirs(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    batch = [message(bytes([i])) for i in range(4)]
    future = publishing(pool, publisher, batch)
    channel = broker.channel(0)
    published(channel, 4)
    channel.ack(2, multiple=True)
    channel.ack(3, multiple=True, nack=True)
    channel.ack(4)
    with pytest.raises(BrokerError, match=f"refused message {batch[2].message_id}"):
        future.result(2)
    rest = [message(b"a"), message(b"b")]
    future = publishing(pool, publisher, rest)
    published(channel, 6)
    channel.ack(6, multiple=True)
    assert future.result(2) is None


def test_a_message_pika_cannot_encode_fails_at_once_and_shifts_no_later_confirm(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    bad = message(b"bad", unencodable=object())
    started = time.monotonic()
    with pytest.raises(BrokerError, match="pika refused it"):
        publisher.publish_confirmed([bad], timeout=3.0, connect_wait=5.0)
    assert time.monotonic() - started < 1.0
    good = message(b"good")
    future = publishing(pool, publisher, [good])
    channel = broker.channel(0)
    published(channel, 1)
    channel.ack(channel.tag_of(good.message_id))  # tag 1: the broker never saw the bad one
    assert future.result(2) is None


def test_two_returned_copies_of_one_message_both_fail_as_unroutable(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    copy = message(b"twice")
    futures = [publishing(pool, publisher, [copy])]
    channel = broker.channel(0)
    published(channel, 1)
    futures.append(publishing(pool, publisher, [copy]))
    published(channel, 2)
    channel.give_back(1)
    channel.give_back(2)
    channel.ack(2, multiple=True)
    for future in futures:
        with pytest.raises(Unroutable):
            future.result(2)


def test_a_return_settles_its_own_copy_and_not_an_earlier_routed_one(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    copy = message(b"twice")
    routed = publishing(pool, publisher, [copy])
    channel = broker.channel(0)
    published(channel, 1)
    channel.ack(1)
    assert routed.result(2) is None
    unroutable = publishing(pool, publisher, [copy])
    published(channel, 2)
    channel.give_back(2)
    channel.ack(2)
    with pytest.raises(Unroutable):
        unroutable.result(2)


@pytest.mark.real_time  # the deadline under test is the publisher's own, on real time
def test_a_batch_never_waits_longer_than_its_timeout_in_all(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    batch = [message(bytes([i])) for i in range(3)]
    started = time.monotonic()
    future = publishing(pool, publisher, batch, timeout=0.3)
    channel = broker.channel(0)
    published(channel, 3)
    for tag in (1, 2):  # each confirm comes just inside a fresh 0.3 s wait; the third never
        time.sleep(0.2)
        channel.ack(tag)
    with pytest.raises(BrokerError, match="no confirm"):
        future.result(5)
    # Past the sleeps (0.4 s), well before a wait renewed by each confirm would end (0.7 s).
    assert time.monotonic() - started < 0.6


def test_a_connection_lost_while_waiting_fails_the_publish_at_once(
    publisher: Publisher, broker: FakeBroker, pool: ThreadPoolExecutor
) -> None:
    future = publishing(pool, publisher, [message()], timeout=10.0)
    published(broker.channel(0), 1)
    started = time.monotonic()
    broker.connections[0].drop()
    with pytest.raises(BrokerError, match="lost"):
        future.result(5)
    assert time.monotonic() - started < 1.0


def test_a_publish_racing_a_lost_connection_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
    publisher: Publisher,
    broker: FakeBroker,
    pool: ThreadPoolExecutor,
) -> None:
    """The connection dies between the publish's wait for it and its hand-over to the I/O
    thread: the batch must fail now, not wait out its timeout on a loop that has stopped."""
    # Long enough that no new connection is up before the publish looks; short for teardown.
    monkeypatch.setattr(publisher_module, "_RECONNECT_DELAYS_S", (0.3,))
    warm = publishing(pool, publisher, [message()])
    channel = broker.channel(0)
    published(channel, 1)
    channel.ack(1)
    warm.result(2)

    class DropsAfterWait(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            ready = super().wait(timeout)
            broker.connections[0].drop()
            wait_until(lambda: not self.is_set())  # the publisher has seen the loss
            return ready

    hook = DropsAfterWait()
    hook.set()
    publisher._ready = hook
    started = time.monotonic()
    with pytest.raises(BrokerError):
        publisher.publish_confirmed([message()], timeout=3.0)
    assert time.monotonic() - started < 1.0


def test_no_connection_is_an_error_within_the_connect_wait(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeBroker, "__call__", _never_opens)
    publisher = Publisher(URL)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerError, match="unavailable"):
            publisher.publish_confirmed([message()], timeout=5.0, connect_wait=0.05)
        assert time.monotonic() - started < 1.0
    finally:
        publisher.close()


def _never_opens(self: FakeBroker, _params: object, **callbacks: object) -> object:
    from .fake_pika import FakeLoop

    class Silent:
        """A connection that never opens (its loop stops on close, as pika's would)."""

        ioloop = FakeLoop()
        is_open, is_closed = True, False

        def close(self) -> None:
            self.ioloop.stop()

    return Silent()


def test_close_during_a_reconnect_delay_returns_at_once(
    monkeypatch: pytest.MonkeyPatch, publisher: Publisher, broker: FakeBroker
) -> None:
    """A process stopping while its broker is away must not wait out the reconnect delay (up
    to 5 s): the API's SIGTERM would hang on it."""
    monkeypatch.setattr(publisher_module, "_RECONNECT_DELAYS_S", (5.0,))
    wait_until(lambda: publisher._ready.is_set())
    broker.connections[0].drop()
    wait_until(lambda: not publisher._ready.is_set())
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 1.0
    assert not publisher._thread.is_alive()
