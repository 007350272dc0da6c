"""A RabbitMQ server seen from outside: an AMQP URL per vhost, and its management API to make
and drop vhosts (tests and the bench each work in vhosts of their own on a shared broker)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests


class Broker:
    def __init__(self, amqp_url: str, management_url: str) -> None:
        parts = urlsplit(amqp_url)
        self.user = parts.username or "guest"
        self.password = parts.password or "guest"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5672
        self.management_url = management_url.rstrip("/")

    def url(self, vhost: str) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quote(vhost, '')}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(
            method,
            f"{self.management_url}/api/{path}",
            auth=(self.user, self.password),
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response

    def version(self) -> str:
        return str(self.api("GET", "overview").json().get("rabbitmq_version", "?"))

    def create_vhost(self, prefix: str) -> str:
        """A new vhost named `<prefix>-<random>`, with full permissions for our user."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.api("PUT", f"vhosts/{quote(name, '')}")
        self.api(
            "PUT",
            f"permissions/{quote(name, '')}/{self.user}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        return name

    def delete_vhost(self, name: str) -> None:
        """Drop the vhost, queues and all."""
        with contextlib.suppress(requests.RequestException):
            self.api("DELETE", f"vhosts/{quote(name, '')}")

    @contextlib.contextmanager
    def vhost(self, label: str) -> Iterator[str]:
        """The AMQP URL of a vhost of our own for the block; deleted after."""
        name = self.create_vhost(f"albums-bench-{label}")
        try:
            yield self.url(name)
        finally:
            self.delete_vhost(name)
