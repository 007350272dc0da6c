"""python -m services.api [serve] | create-user EMAIL"""

from __future__ import annotations

import argparse
import json

from shared.runtime import setup_logging, try_declare
from shared.store import Store

from . import server
from .app import create_app
from .settings import ApiSettings


def serve(settings: ApiSettings) -> None:
    setup_logging(settings.log_level)
    Store(settings.database_url).create_schema()
    # Declared before serving so the first publish finds its queues. The API serves without a
    # broker too: albums wait in the outbox until it is back (the consumers declare then).
    try_declare(settings)
    server.serve(create_app(settings), settings)


def create_user(settings: ApiSettings, email: str) -> None:
    store = Store(settings.database_url)
    store.create_schema()
    user, token = store.create_user(email)
    print(json.dumps({"id": user.id, "email": user.email, "token": token,
                      "prefix": user.prefix}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.api")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP on API_PORT (the default)")
    create = commands.add_parser("create-user", help="create a user; prints its token")
    create.add_argument("email")
    args = parser.parse_args()
    settings = ApiSettings()
    if args.command == "create-user":
        create_user(settings, args.email)
    else:
        serve(settings)


if __name__ == "__main__":
    main()
