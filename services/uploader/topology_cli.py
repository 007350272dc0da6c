"""python -m services.uploader topology apply|prune: the broker's policies and queues, for an
operator (the services apply the policies themselves at start when they can)."""

from __future__ import annotations

import argparse
import sys

from shared.broker.connection import declare_topology, delete_if_empty
from shared.broker.errors import BrokerError
from shared.broker.management import ManagementApi
from shared.broker.policies import apply_policies, warn_leftovers
from shared.config.settings import CommonSettings
from shared.contracts import topology


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("topology", help="apply the broker policies, prune old tiers")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "apply",
        help="apply the policies (DELIVERY_LIMIT, DEAD_LETTER_MAX_LENGTH)"
        " and declare the queues; report what older versions left",
    )
    actions.add_parser("prune", help="delete the empty retry tiers RETRY_DELAYS no longer names")


def run(args: argparse.Namespace, settings: CommonSettings) -> int:
    try:
        return _apply(settings) if args.action == "apply" else _prune(settings)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _apply(settings: CommonSettings) -> int:
    changed = apply_policies(settings)
    declare_topology(settings, policies=False)
    for spec in topology.policy_specs(settings.delivery_limit, settings.dead_letter_max_length):
        state = "applied" if spec.name in changed else "already in place"
        print(f"policy {spec.name} {state}: {spec.definition} on {spec.pattern}")
    for line in warn_leftovers(settings):
        print(f"note: {line}")
    return 0


def _prune(settings: CommonSettings) -> int:
    names = ManagementApi.from_settings(settings).queue_names()
    stale = topology.stale_retry_queues(names, settings.retry_delays)
    if not stale:  # said, so an operator can tell it ran from it doing nothing
        print("nothing to prune: every retry tier is one RETRY_DELAYS names")
    for name in stale:
        deleted = delete_if_empty(settings.amqp_url, name, topology.RETRY_EXCHANGE, name)
        print(f"{name}: {'deleted' if deleted else 'kept, it still holds messages'}")
    return 0
