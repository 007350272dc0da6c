import smtplib

import pytest

from services.notifier.mailer import classify
from shared.policies.retry_policy import FailureKind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (smtplib.SMTPDataError(451, b"try later"), FailureKind.TRANSIENT),
        (smtplib.SMTPDataError(550, b"no such user"), FailureKind.PERMANENT),
        (smtplib.SMTPRecipientsRefused({"a@b": (450, b"busy")}), FailureKind.TRANSIENT),
        (smtplib.SMTPRecipientsRefused({"a@b": (550, b"unknown")}), FailureKind.PERMANENT),
        (ConnectionRefusedError(111, "refused"), FailureKind.TRANSIENT),
        (smtplib.SMTPServerDisconnected("gone"), FailureKind.TRANSIENT),
        (ValueError("bug"), FailureKind.PERMANENT),
    ],
)
def test_smtp_failures_follow_rfc_5321(exc: Exception, kind: FailureKind) -> None:
    assert classify(exc).kind is kind
