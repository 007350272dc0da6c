"""The notifier's claim, send and sent mark against a scripted store and mailer, on a fake
clock: what it does when the store is away before or after the mail went out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from services.notifier.handler import AlbumNotifier
from shared import store
from shared.contracts import messages, topology
from shared.policies import retry_policy
from shared.policies.fate import ACK, Delivery, Fate, decide
from shared.store import AlbumView, NotificationClaim, UserView

LEASE = timedelta(seconds=100)
EVENT = messages.AlbumSettled(album_id="a1", settle_seq=1, uploaded=[], failed=[])
DELIVERY = Delivery(messages.encode(EVENT), {}, False, "m1", topology.ALBUM_SETTLED.routing_key)


def away(what: str) -> OperationalError:
    return OperationalError(what, None, ConnectionRefusedError("connection refused"))


@dataclass
class FakeClock:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class ScriptedStore:
    """Answers like the store; `fail` maps a method to the errors its next calls raise."""

    fail: dict[str, list[Exception]] = field(default_factory=dict)
    claim: NotificationClaim = NotificationClaim(store.ClaimVerdict.SEND, "c1")
    still_ours: bool = True
    calls: list[str] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise self.fail[name].pop(0)

    def album(self, album_id: str) -> AlbumView:
        self._call("album")
        return AlbumView(album_id, 7, "Trip", None, "done", None, 1, None, ())  # type: ignore[arg-type]

    def user(self, user_id: int) -> UserView:
        return UserView(user_id, "me@example.com", "users/7/")

    def claim_notification(self, *_args: Any) -> NotificationClaim:
        self._call("claim")
        return self.claim

    def mark_notification_sent(self, *_args: Any) -> bool:
        self._call("mark")
        return self.still_ours

    def release_notification(self, *_args: Any) -> bool:
        self._call("release")
        return True


@dataclass
class Outbox:
    sent: list[EmailMessage] = field(default_factory=list)
    error: Exception | None = None

    def send(self, message: EmailMessage) -> None:
        if self.error:
            raise self.error
        self.sent.append(message)


def notifier(ledger: ScriptedStore, mailer: Outbox, clock: FakeClock) -> AlbumNotifier:
    return AlbumNotifier(
        ledger,  # type: ignore[arg-type]
        mailer,
        "albums@localhost",
        "http://x",
        ((5, 30), 3),
        claim_lease=LEASE,
        mark_pause_s=(1.0, 8.0),
        clock=clock,
        sleep=clock.sleep,
    )


def run(handler: AlbumNotifier) -> Fate:
    """The settle's fate as the consumer runtime decides it."""
    return decide(handler.route(), DELIVERY)


def retried_without_spending_attempts(fate: Fate) -> bool:
    (copy,) = fate.outgoing
    return (
        copy.exchange == topology.RETRY_EXCHANGE and copy.headers[retry_policy.ATTEMPT_HEADER] == 1
    )


def test_the_mark_is_retried_through_an_outage_shorter_than_the_claim() -> None:
    ledger = ScriptedStore(fail={"mark": [away("mark")] * 12})
    mailer, clock = Outbox(), FakeClock()
    assert run(notifier(ledger, mailer, clock)) == ACK
    assert len(mailer.sent) == 1 and ledger.calls.count("mark") == 13
    assert clock.slept == [1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8]  # 79 s, within 90 s of 100
    assert clock.now < LEASE.total_seconds() * 0.9


def test_the_mark_gives_up_before_the_claim_lapses_and_acks_the_mailed_settle() -> None:
    ledger = ScriptedStore(fail={"mark": [away("mark")] * 1000})
    mailer, clock = Outbox(), FakeClock()
    assert run(notifier(ledger, mailer, clock)) == ACK  # not raised: not redelivered
    assert len(mailer.sent) == 1
    assert clock.now <= LEASE.total_seconds() * 0.9
    assert clock.now + 8 > LEASE.total_seconds() * 0.9  # it tried until the last pause


def test_a_mark_refused_because_the_claim_lapsed_is_not_retried() -> None:
    ledger = ScriptedStore(still_ours=False)
    mailer, clock = Outbox(), FakeClock()
    assert run(notifier(ledger, mailer, clock)) == ACK
    assert ledger.calls.count("mark") == 1 and clock.slept == []


@pytest.mark.parametrize("where", ["album", "claim"])
def test_a_store_away_before_the_mail_waits_in_a_delay_tier(where: str) -> None:
    ledger = ScriptedStore(fail={where: [away(where)]})
    mailer = Outbox()
    outcome = run(notifier(ledger, mailer, FakeClock()))
    assert retried_without_spending_attempts(outcome)
    assert mailer.sent == []


def test_a_store_bug_is_not_taken_for_an_outage() -> None:
    """A bug spends an attempt (so it ends as a dead letter); an outage would not."""
    ledger = ScriptedStore(fail={"claim": [ProgrammingError("claim", None, Exception("bug"))]})
    fate = run(notifier(ledger, Outbox(), FakeClock()))
    (copy,) = fate.outgoing
    assert fate.kind == "retry" and copy.headers[retry_policy.ATTEMPT_HEADER] == 2


def test_a_failed_send_whose_claim_cannot_be_released_is_retried_as_the_relay_says() -> None:
    ledger = ScriptedStore(fail={"release": [away("release")]})
    mailer = Outbox(error=ConnectionRefusedError(111, "refused"))
    (copy,) = run(notifier(ledger, mailer, FakeClock())).outgoing
    assert copy.headers[retry_policy.ATTEMPT_HEADER] == 2  # a transient failure: attempt 2
