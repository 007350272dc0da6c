"""python -m services.api [serve] | create-user EMAIL [--operator] | rotate-token EMAIL |
make-operator EMAIL"""

from __future__ import annotations

import argparse
import json

from shared.config.settings import load
from shared.process.runtime import freeze_startup_heap, setup_logging
from shared.store import AmbiguousEmail, Store
from shared.store.tables import OPERATOR

from .settings import ApiSettings


def serve(settings: ApiSettings) -> None:
    # The web app, its server and the metrics are imported here, not above: the user commands
    # (create-user, run by `make run`'s seed and by each e2e test's user) need only the store,
    # and importing Flask's app took them twice the CPU.
    from shared.observability import metrics
    from shared.observability.store_metrics import StoreCollector

    from . import server
    from .app import create_app

    setup_logging(settings.log_level, "api", settings.log_format)
    store = Store(settings.database_url)
    store.create_schema()
    # Its own server and port: /metrics is never reachable through API_PORT.
    metrics.serve(settings.api_metrics_port, settings.metrics_host, StoreCollector(store))
    # No declare: the uploader owns the topology, so the API's broker user needs no configure
    # right. Until the uploader first declared it, albums wait in the outbox (unroutable).
    app = create_app(settings)
    freeze_startup_heap()
    server.serve(app, settings)


#: The longest address SMTP carries (RFC 5321's path limit, less its brackets).
_MAX_EMAIL = 254


def _email_address(email: str) -> str:
    """`email` as given, or the command's exit with why it is no email address. A loose rule
    on purpose: an install's own domains (`admin@localhost`, `ops@corp.local`) are addresses
    its relay delivers to, which a public-internet check (pydantic's EmailStr) refuses."""
    local, at, domain = email.rpartition("@")
    reason = None
    if not (at and local and domain):
        reason = "it needs a name, an @ and a domain"
    elif any(c.isspace() or not c.isprintable() for c in email):
        reason = "it must not hold spaces or control characters"
    elif len(email) > _MAX_EMAIL:
        reason = f"it is longer than {_MAX_EMAIL} characters"
    if reason is not None:
        raise SystemExit(f"create-user: {email!r} is not an email address ({reason})")
    return email


def create_user(settings: ApiSettings, email: str, operator: bool = False) -> None:
    email = _email_address(email)  # before the store: nothing is made for a typo
    store = Store(settings.database_url)
    store.create_schema()
    user, token = store.create_user(email)
    if operator:
        user = store.set_role(email, OPERATOR) or user
    print(
        json.dumps(
            {
                "id": user.id,
                "email": user.email,
                "token": token,
                "prefix": user.prefix,
                "role": user.role or "user",
            }
        )
    )


def make_operator(settings: ApiSettings, email: str) -> None:
    """Give an existing user the operator role: the dead-letter desk (/operator/*)."""
    store = Store(settings.database_url)
    store.create_schema()
    user = store.set_role(email, OPERATOR)
    if user is None:
        raise SystemExit(f"no user {email}: create it with create-user")
    print(json.dumps({"id": user.id, "email": user.email, "role": user.role}))


def rotate_token(settings: ApiSettings, email: str) -> None:
    """A new token for an existing user: the old one and every signed-in browser stop working."""
    store = Store(settings.database_url)
    store.create_schema()
    rotated = store.rotate_token(email)
    if rotated is None:
        raise SystemExit(f"no user {email}: create it with create-user")
    user, token = rotated
    print(json.dumps({"id": user.id, "email": user.email, "token": token, "prefix": user.prefix}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.api")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP on API_PORT (the default)")
    create = commands.add_parser("create-user", help="create a user; prints its token")
    create.add_argument("email")
    create.add_argument(
        "--operator", action="store_true", help="with the operator role: the dead-letter desk"
    )
    make_op = commands.add_parser(
        "make-operator", help="give a user the operator role (the dead-letter desk)"
    )
    make_op.add_argument("email")
    rotate = commands.add_parser("rotate-token", help="a new token for a user; signs them out")
    rotate.add_argument("email")
    args = parser.parse_args()
    # A setting refused (a port out of range, production without its secrets): its reason,
    # not a traceback.
    settings = load(ApiSettings)
    if args.command is None or args.command == "serve":
        serve(settings)
        return
    try:
        if args.command == "create-user":
            create_user(settings, args.email, args.operator)
        elif args.command == "make-operator":
            make_operator(settings, args.email)
        else:
            rotate_token(settings, args.email)
    except AmbiguousEmail as exc:
        raise SystemExit(f"{args.command}: {exc}") from None


if __name__ == "__main__":
    main()
