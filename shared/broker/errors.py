"""What the broker adapter raises; importing it does not load pika."""

from __future__ import annotations


class BrokerError(Exception):
    """A publish or a connection that did not go through; the caller may try again later."""


class Unroutable(BrokerError):
    """The broker had no queue for a message: it was not stored anywhere."""
