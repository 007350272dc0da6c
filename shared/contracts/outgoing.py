"""A message to send: what the store's outbox, the retry policy and the handlers build.

Plain data, no broker client: the store and the policies import it without loading pika; the
broker adapter (`shared/broker/`) turns it into an AMQP publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outgoing:
    """One persistent message to publish with confirms and mandatory routing."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    content_type: str = "application/json"
