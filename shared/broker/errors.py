"""What the broker adapter raises; importing it does not load pika."""

from __future__ import annotations


class BrokerError(Exception):
    """A publish or a connection that did not go through; the caller may try again later."""


class Refused(BrokerError):
    """The broker answered this one message with a no: a nack (e.g. a queue at its max length
    that rejects publishes) or a return. Unlike a lost connection, sending it again at once
    will most likely meet the same answer."""


class Unroutable(Refused):
    """The broker had no queue for a message: it was not stored anywhere."""
