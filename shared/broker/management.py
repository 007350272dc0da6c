"""RabbitMQ's management HTTP API, for what AMQP cannot do: set policies, read a queue's
arguments, list the queues of a vhost, create the services' users. One vhost per client: the
one AMQP_URL names."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from pydantic import SecretStr

from shared.broker.errors import BrokerError
from shared.config.settings import CommonSettings

#: An answer takes milliseconds; a silent management API must not hold a service's start.
TIMEOUT_S = 5


class ManagementUnavailable(BrokerError):
    """The management API did not answer, or refused us; the message says which and why."""


class ManagementApi:
    def __init__(self, url: str, user: str, password: SecretStr, vhost: str) -> None:
        self.url = url.rstrip("/")
        self.vhost = vhost
        self._auth = (user, password.get_secret_value())
        self._user = user

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ManagementApi:
        return cls(
            settings.rabbitmq_management_url,
            settings.rabbitmq_management_user,
            settings.rabbitmq_management_password,
            settings.amqp_vhost,
        )

    def policy(self, name: str) -> dict[str, Any] | None:
        """The policy as the broker holds it, or None."""
        policy: dict[str, Any] | None = self._json("GET", f"policies/{self._v()}/{quote(name, '')}")
        return policy

    def put_policy(self, name: str, body: dict[str, Any]) -> None:
        self._call("PUT", f"policies/{self._v()}/{quote(name, '')}", json=body)

    def queue(self, name: str) -> dict[str, Any] | None:
        """The queue as the management API lists it (arguments, policy...), or None."""
        queue: dict[str, Any] | None = self._json("GET", f"queues/{self._v()}/{quote(name, '')}")
        return queue

    def queue_names(self) -> list[str]:
        queues = self._json("GET", f"queues/{self._v()}?columns=name") or []
        return [str(q["name"]) for q in queues]

    def put_vhost(self) -> None:
        self._call("PUT", f"vhosts/{self._v()}")

    def put_user(self, name: str, password: SecretStr, tags: str) -> None:
        """Create the user, or set its password and tags (an administrator's call)."""
        self._call(
            "PUT",
            f"users/{quote(name, '')}",
            json={"password": password.get_secret_value(), "tags": tags},
        )

    def put_permissions(self, user: str, configure: str, write: str, read: str) -> None:
        self._call(
            "PUT",
            f"permissions/{self._v()}/{quote(user, '')}",
            json={"configure": configure, "write": write, "read": read},
        )

    def _v(self) -> str:
        return quote(self.vhost, "")

    def _json(self, method: str, path: str) -> Any:
        response = self._call(method, path, missing_ok=True)
        return None if response.status_code == 404 else response.json()

    def _call(
        self, method: str, path: str, missing_ok: bool = False, **kwargs: Any
    ) -> requests.Response:
        where = f"{self.url}/api/{path.split('?')[0]}"
        try:
            response = requests.request(
                method, f"{self.url}/api/{path}", auth=self._auth, timeout=TIMEOUT_S, **kwargs
            )
        except requests.RequestException as exc:
            raise ManagementUnavailable(
                f"RabbitMQ's management API does not answer at {self.url}"
                f" ({exc.__class__.__name__}); is the rabbitmq_management plugin enabled,"
                " and RABBITMQ_MANAGEMENT_URL right?"
            ) from exc
        if response.status_code in (401, 403):
            raise ManagementUnavailable(
                f"RabbitMQ's management API refused user {self._user!r} ({response.status_code}"
                f" on {method} {where}): it needs the policymaker or administrator tag and"
                f" permissions on vhost {self.vhost!r} (RABBITMQ_MANAGEMENT_USER/_PASSWORD)"
            )
        if response.status_code == 404 and missing_ok:
            return response
        if not response.ok:
            raise ManagementUnavailable(
                f"RabbitMQ's management API answered {response.status_code}"
                f" to {method} {where}: {response.text[:200]}"
            )
        return response
