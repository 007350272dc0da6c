"""Applies the project's broker policies (what an operator may tune) through the management API,
idempotently, and says what the broker still holds from older versions."""

from __future__ import annotations

import logging

from shared.broker.management import ManagementApi, ManagementUnavailable
from shared.config.settings import CommonSettings
from shared.contracts import topology

log = logging.getLogger(__name__)

#: Where the operator's one-time move of an older queue is described.
MIGRATION_DOC = "docs/broker-policies.md"


def apply_policies(settings: CommonSettings) -> list[str]:
    """Put each policy whose definition differs on the broker; the names of those changed.
    Raises ManagementUnavailable when the management API cannot be used."""
    api = ManagementApi.from_settings(settings)
    changed = []
    for spec in topology.policy_specs(settings.delivery_limit, settings.dead_letter_max_length):
        current = api.policy(spec.name)
        if current is not None and _same(current, spec):
            log.info(
                "broker policy %s already in place on vhost %r: %s",
                spec.name,
                api.vhost,
                spec.definition,
            )
            continue
        api.put_policy(spec.name, spec.body())
        changed.append(spec.name)
        log.info(
            "broker policy %s applied on vhost %r: %s (was %s)",
            spec.name,
            api.vhost,
            spec.definition,
            current["definition"] if current else "none",
        )
    return changed


def try_apply_policies(settings: CommonSettings) -> bool:
    """Apply the policies at a service's start; False (logged) if the management API cannot be
    used: the service runs on, and the policies wait for its next start or the CLI."""
    try:
        apply_policies(settings)
        warn_leftovers(settings)
        return True
    except ManagementUnavailable as exc:
        log.error(
            "broker policies NOT applied (DELIVERY_LIMIT, DEAD_LETTER_MAX_LENGTH): %s. The"
            " service runs on; a work queue that never had them has no delivery limit. Apply"
            " them with `python -m services.uploader topology apply` once it answers.",
            exc,
        )
        return False


def warn_leftovers(settings: CommonSettings) -> list[str]:
    """Log what the broker holds from older versions: queue arguments a policy carries now, and
    retry tiers RETRY_DELAYS no longer names; the lines logged."""
    api = ManagementApi.from_settings(settings)
    lines = [leftover_line(name, arguments) for name, arguments in _leftovers(api)]
    stale = topology.stale_retry_queues(api.queue_names(), settings.retry_delays)
    lines += [
        f"retry tier {name} is no longer in RETRY_DELAYS: what it holds still returns to"
        f" its work queue after its TTL; `topology prune` deletes it once empty"
        for name in stale
    ]
    for line in lines:
        log.warning("%s", line)
    return lines


def leftover_line(queue: str, arguments: dict[str, object]) -> str:
    listed = ", ".join(f"{k}={v}" for k, v in sorted(arguments.items()))
    return (
        f"queue {queue} keeps {listed} from an older version: the broker applies the lower of"
        f" it and the policy, so the policy can lower the value but not raise it; see"
        f" {MIGRATION_DOC} to move the queue over"
    )


def _leftovers(api: ManagementApi) -> list[tuple[str, dict[str, object]]]:
    names = [q.name for q in topology.WORK_QUEUES]
    names += [topology.dead_letter_queue_name(q) for q in topology.WORK_QUEUES]
    found = []
    for name in names:
        queue = api.queue(name)
        left = topology.leftover_arguments(queue.get("arguments") or {}) if queue else {}
        if left:
            found.append((name, left))
    return found


def _same(current: dict[str, object], spec: topology.PolicySpec) -> bool:
    return (
        current.get("pattern") == spec.pattern
        and current.get("definition") == spec.definition
        and current.get("priority") == spec.priority
        and current.get("apply-to") == spec.apply_to
    )
