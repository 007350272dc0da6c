"""A mailer for unit tests: keeps each message, or fails as told (no SMTP)."""

from __future__ import annotations

from email.message import EmailMessage


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        #: Raised, one per call, by the next sends (an SMTP reply, a refused connection...).
        self.failures: list[BaseException] = []

    def send(self, message: EmailMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
