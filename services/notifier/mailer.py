"""Speaks SMTP to the relay (the local mail catcher in development)."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

from shared.observability import error_ids
from shared.policies.retry_policy import Failure, FailureKind

if TYPE_CHECKING:
    from .settings import NotifierSettings

log = logging.getLogger(__name__)


class InsecureRelay(smtplib.SMTPException):
    """The relay cannot give the encrypted connection the settings ask for: nothing was sent,
    the password least of all."""


@dataclass(frozen=True)
class Security:
    """How the connection is encrypted (`none`, `starttls`, `tls`), the context that verifies
    the relay's certificate, and the login (user, password) if any."""

    mode: str = "none"
    context: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None
    allow_plaintext_login: bool = False


class SmtpMailer:
    def __init__(
        self, host: str, port: int, timeout_s: float, security: Security | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._security = security or Security()

    @classmethod
    def from_settings(cls, settings: NotifierSettings) -> SmtpMailer:
        context = None
        if settings.smtp_security != "none":
            context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
        password = settings.smtp_password.get_secret_value()
        login = (settings.smtp_user, password) if settings.smtp_user else None
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_timeout_s,
            Security(settings.smtp_security, context, login, settings.smtp_allow_plaintext_login),
        )

    def send(self, message: EmailMessage) -> None:
        """Return once the relay has accepted the message; raise only if it has not.

        The relay takes responsibility for a message with its 250 reply to the end of DATA
        (RFC 5321, sections 4.1.1.4 and 6.1), which `send_message` waits for. What QUIT brings
        after that (`with smtplib.SMTP()` raises on anything but 221) must not make a sent mail
        count as failed: it would be sent again.
        """
        smtp = self._connect()
        try:
            self._secure_and_log_in(smtp)
            smtp.send_message(message)
        except BaseException:
            smtp.close()
            raise
        _say_goodbye(smtp)

    def _connect(self) -> smtplib.SMTP:
        if self._security.mode == "tls":
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout_s, context=self._security.context
            )
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)

    def _secure_and_log_in(self, smtp: smtplib.SMTP) -> None:
        security = self._security
        if security.mode == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise InsecureRelay(
                    "the mail relay offers no STARTTLS (SMTP_SECURITY=starttls): nothing was sent"
                )
            smtp.starttls(context=security.context)
            smtp.ehlo()
        if security.login is None:
            return
        # Checked again here, not only in the settings: the password never leaves unencrypted.
        if not _encrypted(smtp) and not security.allow_plaintext_login:
            raise InsecureRelay(
                "the connection to the mail relay is not encrypted: the password was not sent"
            )
        smtp.login(*security.login)


def _encrypted(smtp: smtplib.SMTP) -> bool:
    return isinstance(smtp.sock, ssl.SSLSocket)


def _say_goodbye(smtp: smtplib.SMTP) -> None:
    """QUIT politely; the mail is already sent, so a bad answer or a lost line is only logged."""
    try:
        code, reply = smtp.docmd("QUIT")
        if code != 221:
            log.info(
                "the mail relay answered QUIT with %d %s after taking the mail",
                code,
                reply.decode(errors="replace"),
            )
    except (OSError, smtplib.SMTPException) as exc:
        log.info("the mail relay went away at QUIT after taking the mail: %s", exc)
    finally:
        smtp.close()


def classify(exc: BaseException) -> Failure:
    """SMTP's own rule (RFC 5321): 4yz replies are temporary, 5yz permanent.

    Only failures before the relay accepted the message reach here (see `SmtpMailer.send`);
    a connection lost while waiting for that acceptance is transient, and the mail is sent
    again (the one case where a relay may deliver twice: RFC 1047).
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        kind = _kind(max(codes))
        return Failure(kind, f"the mail relay refused the recipient ({codes[0]})", codes[0])
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = _kind(exc.smtp_code)
        text = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return Failure(kind, f"the mail relay answered {exc.smtp_code} {text}", exc.smtp_code)
    if isinstance(exc, InsecureRelay):
        # The relay's setup, not the message: the email waits in the tiers for it to be fixed.
        return Failure(FailureKind.TRANSIENT, str(exc))
    if isinstance(exc, OSError | smtplib.SMTPException):
        reason = error_ids.plain("the mail relay is unreachable", log, exc)
        return Failure(FailureKind.TRANSIENT, reason)
    return Failure(
        FailureKind.PERMANENT, error_ids.plain(error_ids.INTERNAL, log, exc, logging.ERROR)
    )


def _kind(smtp_code: int) -> FailureKind:
    return FailureKind.TRANSIENT if 400 <= smtp_code < 500 else FailureKind.PERMANENT
