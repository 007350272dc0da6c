"""The notifier's settings (on top of those every service reads, shared/config/settings.py): the
SMTP relay it mails through and how, the sender, the links in the mail, and how long it holds its
claim on a settle's email."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.config.settings import CommonSettings, Port, PortOrOff

from .claim_timing import check_lease


class NotifierSettings(CommonSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 1025
    smtp_timeout_s: float = 20.0
    #: How the connection to the relay is encrypted: `none` (the local mail catcher),
    #: `starttls` (upgrade on connect, usually port 587) or `tls` (TLS from the first byte,
    #: usually port 465). The relay's certificate is verified against the system's CAs, or
    #: against SMTP_CA_FILE (a PEM file) when it is set.
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_ca_file: str = ""
    #: The relay's login; empty: none. The password is sent only over an encrypted connection,
    #: unless SMTP_ALLOW_PLAINTEXT_LOGIN says the relay is on this machine.
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_allow_plaintext_login: bool = False
    mail_from: str = "Album Publisher <albums@localhost>"
    #: Where the email's links point: the API's public address.
    app_base_url: str = "http://127.0.0.1:8000"
    #: /healthz and /readyz (shared/observability/health_server.py); 0: not served.
    notifier_health_port: PortOrOff = 8002
    notifier_concurrency: int = Field(default=2, ge=1, le=32)
    #: /metrics (on METRICS_HOST); 0: off.
    notifier_metrics_port: PortOrOff = 0
    #: How long a notifier's claim on a settle holds (claim_timing.py): the longest a store
    #: outage right after a mail went out may last without a second mail, and the longest a
    #: crashed sender's mail is held up.
    notifier_claim_lease_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifierSettings:
        check_lease(self.claim_lease, self.smtp_timeout_s)
        return self

    @model_validator(mode="after")
    def _no_password_in_the_clear(self) -> NotifierSettings:
        has_password = bool(self.smtp_password.get_secret_value())
        if has_password != bool(self.smtp_user):
            raise ValueError("set SMTP_USER and SMTP_PASSWORD together, or neither")
        if has_password and self.smtp_security == "none" and not self.smtp_allow_plaintext_login:
            raise ValueError(
                "SMTP_PASSWORD would go to the relay unencrypted: set "
                "SMTP_SECURITY=starttls or tls (or, for a relay on this machine "
                "only, SMTP_ALLOW_PLAINTEXT_LOGIN=true)"
            )
        return self

    @property
    def claim_lease(self) -> timedelta:
        return timedelta(seconds=self.notifier_claim_lease_s)
