"""The desk's index of dead letters: rows written beside each letter's outbox row, the groups
the desk shows (by kind of end and Graph code), and the operators' audit.

Every read is paged and served by an index on (state, kind, code, dead_at): the desk never
reads the dead-letter queue, whatever it holds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.contracts import dead_letters, messages, topology
from shared.contracts.dead_letters import CODE_HEADER, QUEUE_HEADER, DeadLetter
from shared.contracts.outgoing import Outgoing
from shared.store.tables import AuditEntry, DeadLetterRecord, LetterState
from shared.store.views import AuditView, LetterGroup, LetterView

#: The kinds of end a dead letter is grouped by (with its Graph code).
REFUSED, GAVE_UP, THROTTLED, POISON, ERROR = "refused", "gave up", "throttled", "poison", "error"
#: Dead-lettered by the broker itself (the delivery limit), found in the queue by the drain.
BROKER = "broker"
#: The image's object could not be read (missing, access denied): its code is S3's HTTP
#: status, which under "refused" would read as a Graph code.
BUCKET = "bucket"


def kind_of(reason: str, poison: bool = False) -> str:
    """Which kind of end `reason` tells: the first word of a group's name."""
    if poison:
        return POISON
    if reason.startswith("gave up"):
        return GAVE_UP
    if reason.startswith("Facebook kept throttling"):
        return THROTTLED
    if reason.startswith("broker:"):
        return BROKER
    if "error id" in reason:
        return ERROR
    if reason.startswith(dead_letters.BUCKET_REASONS):
        return BUCKET
    return REFUSED


def group_name(kind: str, code: int | None) -> str:
    """What the desk calls a group: "refused: code 324", "poison"."""
    return f"{kind}: code {code}" if code is not None else kind


def records(outgoing: Iterable[Outgoing], poison: bool = False) -> list[DeadLetterRecord]:
    """The index rows of the dead letters among `outgoing` (the others are not letters)."""
    return [record(m, poison) for m in outgoing if m.exchange == topology.DEAD_EXCHANGE]


def record(message: Outgoing, poison: bool = False) -> DeadLetterRecord:
    letter = DeadLetter(0, message.body, message.headers)
    reason = letter.reason  # the broker's own letters say theirs in x-death
    code = message.headers.get(CODE_HEADER)
    return DeadLetterRecord(
        message_id=message.message_id,
        queue=str(message.headers.get(QUEUE_HEADER, message.routing_key)),
        album_id=letter.album_id,
        image_id=letter.image_id,
        kind=kind_of(reason, poison or letter.album_id is None),
        code=code if isinstance(code, int) else None,
        reason=reason,
        # A body over the messages' limit is poison that never decodes: the index keeps its
        # head, enough to read; the queue keeps it whole.
        headers=dict(message.headers),
        body=message.body[: messages.MAX_BODY_BYTES],
        state=LetterState.WAITING,
    )


def groups(s: Session, offset: int, limit: int) -> list[LetterGroup]:
    """The waiting letters' groups, largest first, with counts and first/last seen."""
    rows = s.execute(
        select(
            DeadLetterRecord.kind,
            DeadLetterRecord.code,
            func.count(),
            func.min(DeadLetterRecord.dead_at),
            func.max(DeadLetterRecord.dead_at),
        )
        .where(DeadLetterRecord.state == LetterState.WAITING)
        .group_by(DeadLetterRecord.kind, DeadLetterRecord.code)
        .order_by(func.count().desc(), DeadLetterRecord.kind, DeadLetterRecord.code)
        .offset(offset)
        .limit(limit)
    )
    return [
        LetterGroup(kind, code, group_name(kind, code), count, first, last)
        for kind, code, count, first, last in rows
    ]


def waiting_ids(
    s: Session, kind: str | None, code: int | None, album_id: str | None, limit: int
) -> list[str]:
    """Up to `limit` waiting letters' ids, oldest first: of a group, or of an album."""
    query = select(DeadLetterRecord.message_id).where(DeadLetterRecord.state == LetterState.WAITING)
    if album_id is not None:
        query = query.where(DeadLetterRecord.album_id == album_id)
    if kind is not None:
        query = query.where(
            DeadLetterRecord.kind == kind,
            DeadLetterRecord.code.is_(None) if code is None else DeadLetterRecord.code == code,
        )
    return list(s.scalars(query.order_by(DeadLetterRecord.dead_at).limit(limit)))


def letters(s: Session, kind: str, code: int | None, offset: int, limit: int) -> list[LetterView]:
    """A page of a group's waiting letters, oldest first."""
    query = (
        select(DeadLetterRecord)
        .where(
            DeadLetterRecord.state == LetterState.WAITING,
            DeadLetterRecord.kind == kind,
            DeadLetterRecord.code.is_(None) if code is None else DeadLetterRecord.code == code,
        )
        .order_by(DeadLetterRecord.dead_at, DeadLetterRecord.message_id)
        .offset(offset)
        .limit(limit)
    )
    return [view(r) for r in s.scalars(query)]


def view(r: DeadLetterRecord) -> LetterView:
    return LetterView(
        r.message_id,
        r.queue,
        r.album_id,
        r.image_id,
        r.kind,
        r.code,
        group_name(r.kind, r.code),
        r.reason,
        dict(r.headers),
        r.body,
        r.dead_at,
        r.state,
        r.handled_by,
        r.handled_at,
    )


def mark(
    s: Session, message_ids: Sequence[str], state: str, who: str, now: datetime
) -> list[DeadLetterRecord]:
    """Mark the waiting ones of `message_ids` `state` (replayed, purged); returns them."""
    rows = list(
        s.scalars(
            select(DeadLetterRecord)
            .where(
                DeadLetterRecord.message_id.in_(message_ids),
                DeadLetterRecord.state == LetterState.WAITING,
            )
            .with_for_update()
        )
    )
    for row in rows:
        row.state, row.handled_by, row.handled_at = state, who, now
    return rows


def audit(s: Session, who: str, action: str, target: str, count: int, now: datetime) -> None:
    s.add(AuditEntry(at=now, operator=who, action=action, target=target[:400], count=count))


def audit_log(s: Session, offset: int, limit: int) -> list[AuditView]:
    rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).offset(offset).limit(limit))
    return [AuditView(r.at, r.operator, r.action, r.target, r.count) for r in rows]
