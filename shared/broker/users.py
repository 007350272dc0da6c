"""The services' broker users, each with only the rights it needs.

They are shipped as a RabbitMQ definitions file, `deploy/rabbitmq/definitions.json` (the vhost,
the users without passwords, their permissions): an operator imports it, or has this module
create them on an existing broker through the management API, with passwords from the
environment (`BROKER_PASSWORD_API`, `_UPLOADER`, `_NOTIFIER`, `_MONITORING`). Why each right
is there: docs/broker-users.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.broker.management import ManagementApi

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"
#: The users' names start with this; the rest names the role (and its password's variable).
PREFIX = "albums-"


class BrokerPasswords(BaseSettings):
    """One password per user; none has a default, so a missing one stops the command."""

    model_config = SettingsConfigDict(
        env_prefix="BROKER_PASSWORD_", env_file=".env", extra="ignore"
    )
    api: SecretStr
    uploader: SecretStr
    notifier: SecretStr
    monitoring: SecretStr

    def of(self, role: str) -> SecretStr:
        password: SecretStr = getattr(self, role)
        return password


@dataclass(frozen=True)
class BrokerUser:
    name: str
    tags: str
    configure: str
    write: str
    read: str

    @property
    def role(self) -> str:
        return self.name.removeprefix(PREFIX)


@dataclass(frozen=True)
class Definitions:
    vhost: str
    users: tuple[BrokerUser, ...]


def load(path: Path = DEFINITIONS) -> Definitions:
    """The vhost and the users of a definitions file, with their permissions on that vhost."""
    data: dict[str, Any] = json.loads(path.read_text())
    (vhost,) = [v["name"] for v in data["vhosts"]]
    rights = {p["user"]: p for p in data["permissions"] if p["vhost"] == vhost}
    return Definitions(
        vhost,
        tuple(
            BrokerUser(
                u["name"],
                u.get("tags", ""),
                rights[u["name"]]["configure"],
                rights[u["name"]]["write"],
                rights[u["name"]]["read"],
            )
            for u in data["users"]
        ),
    )


def create(
    admin: ManagementApi,
    users: tuple[BrokerUser, ...],
    passwords: Mapping[str, SecretStr] | BrokerPasswords,
    name: Callable[[str], str] = lambda n: n,
) -> list[str]:
    """Create the vhost `admin` is for, and each user with its password and rights (again:
    the password and rights are set anew). `name` renames the users (a test's own). Returns
    the names created."""
    admin.put_vhost()
    made = []
    for user in users:
        password = (
            passwords.of(user.role)
            if isinstance(passwords, BrokerPasswords)
            else passwords[user.role]
        )
        admin.put_user(name(user.name), password, user.tags)
        admin.put_permissions(name(user.name), user.configure, user.write, user.read)
        made.append(name(user.name))
    return made
