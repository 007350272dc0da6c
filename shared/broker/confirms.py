"""The publishes of one channel that wait for the broker's confirm, by delivery tag.

RabbitMQ numbers the publishes of a channel in confirm mode from 1, in the order it receives
them, and confirms by that number (`multiple` covers every number up to it). A new channel
starts again at 1, so a tracker belongs to one channel: the publisher makes a new one for each
channel and fails the old one's, and an ack or a return is given only to the tracker of the
channel it came on. A return (`mandatory`, no queue took the message) names the message by
its id only; it always comes before the confirm of the same publish, so it is matched to the
oldest publish of that id that has not been returned yet.

No pika here: the frames' fields come in as plain values; only the I/O thread calls it.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

from shared.broker.errors import BrokerError, Refused, Unroutable

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    future: Future[None]
    message_id: str
    returned: bool = False


class Confirms:
    def __init__(self) -> None:
        self._next_tag = 1
        # Insertion order is tag order: `multiple` settles from the front.
        self._waiting: dict[int, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def sent(self, message_id: str, future: Future[None]) -> int:
        """Count a publish the channel has taken (only then: one pika refused never reached the
        broker and has no number); returns its delivery tag."""
        tag = self._next_tag
        self._next_tag += 1
        self._waiting[tag] = _Waiting(future, message_id)
        return tag

    def returned(self, message_id: str | None) -> None:
        for waiting in self._waiting.values():
            if waiting.message_id == message_id and not waiting.returned:
                waiting.returned = True
                return
        log.warning("a return for message %s, which waits for no confirm", message_id)

    def confirmed(self, delivery_tag: int, multiple: bool, acked: bool) -> None:
        if multiple:
            tags = []
            for tag in self._waiting:
                if tag > delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [delivery_tag]
        for tag in tags:
            waiting = self._waiting.pop(tag, None)
            if waiting is not None:
                _settle(waiting, acked)

    def fail_all(self, error: BrokerError) -> None:
        """The channel is gone: no confirm will come for what still waits."""
        waiting, self._waiting = self._waiting, {}
        for entry in waiting.values():
            _fail(entry.future, error)


def _settle(waiting: _Waiting, acked: bool) -> None:
    if waiting.returned:
        _fail(waiting.future, Unroutable(f"message {waiting.message_id} reached no queue"))
    elif acked:
        if not waiting.future.done():
            waiting.future.set_result(None)
    else:
        _fail(waiting.future, Refused(f"broker refused message {waiting.message_id}"))


def _fail(future: Future[None], error: BrokerError) -> None:
    if not future.done():
        future.set_exception(error)
