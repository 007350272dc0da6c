"""python -m services.uploader broker-users: create the services' broker users on an existing
broker (`shared.broker.users`), as an administrator (RABBITMQ_MANAGEMENT_URL, _USER,
_PASSWORD), with their passwords from BROKER_PASSWORD_API, _UPLOADER, _NOTIFIER, _MONITORING."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from shared.broker import users
from shared.broker.errors import BrokerError
from shared.broker.management import ManagementApi
from shared.config.settings import CommonSettings


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("broker-users", help="create the services' broker users")
    parser.add_argument(
        "--definitions",
        type=Path,
        default=users.DEFINITIONS,
        help="the definitions file (default: deploy/rabbitmq/definitions.json)",
    )
    parser.add_argument("--vhost", help="the vhost to grant them (default: the file's)")


def run(args: argparse.Namespace, settings: CommonSettings) -> int:
    try:
        passwords = users.BrokerPasswords()  # type: ignore[call-arg]  # from the environment
    except ValidationError as exc:
        missing = ", ".join(f"BROKER_PASSWORD_{e['loc'][0]}".upper() for e in exc.errors())
        print(f"error: no password given for {missing}", file=sys.stderr)
        return 1
    definitions = users.load(args.definitions)
    vhost = args.vhost or definitions.vhost
    admin = ManagementApi(
        settings.rabbitmq_management_url,
        settings.rabbitmq_management_user,
        settings.rabbitmq_management_password,
        vhost,
    )
    try:
        made = users.create(admin, definitions.users, passwords)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for user in definitions.users:
        print(
            f"{user.name} on vhost {vhost}: tags {user.tags or '-'}; configure "
            f"{user.configure} write {user.write} read {user.read}"
        )
    print(f"{len(made)} users created or updated")
    return 0
