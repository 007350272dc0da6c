"""Speaks SMTP to the relay (the local mail catcher in development)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from shared.retry_policy import Failure, FailureKind


class SmtpMailer:
    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            smtp.send_message(message)


def classify(exc: BaseException) -> Failure:
    """SMTP's own rule (RFC 5321): 4yz replies are temporary, 5yz permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        kind = _kind(max(codes))
        return Failure(kind, f"the mail relay refused the recipient ({codes[0]})", codes[0])
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = _kind(exc.smtp_code)
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        return Failure(kind, f"the mail relay answered {exc.smtp_code} {text}", exc.smtp_code)
    if isinstance(exc, OSError | smtplib.SMTPException):
        return Failure(FailureKind.TRANSIENT, f"the mail relay is unreachable: {exc}")
    return Failure(FailureKind.PERMANENT, f"internal error: {type(exc).__name__}: {exc}")


def _kind(smtp_code: int) -> FailureKind:
    return FailureKind.TRANSIENT if 400 <= smtp_code < 500 else FailureKind.PERMANENT
