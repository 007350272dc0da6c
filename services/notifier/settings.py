from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from shared.settings import CommonSettings

from .claim_timing import check_lease


class NotifierSettings(CommonSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_timeout_s: float = 20.0
    mail_from: str = "Album Publisher <albums@localhost>"
    #: Where the email's links point: the API's public address.
    app_base_url: str = "http://127.0.0.1:8000"
    notifier_concurrency: int = Field(default=2, ge=1, le=32)
    #: How long a notifier's claim on a settle holds (claim_timing.py): the longest a store
    #: outage right after a mail went out may last without a second mail, and the longest a
    #: crashed sender's mail is held up.
    notifier_claim_lease_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifierSettings:
        check_lease(self.claim_lease, self.smtp_timeout_s)
        return self

    @property
    def claim_lease(self) -> timedelta:
        return timedelta(seconds=self.notifier_claim_lease_s)
