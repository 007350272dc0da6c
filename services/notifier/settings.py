from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class NotifierSettings(CommonSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_timeout_s: float = 20.0
    mail_from: str = "Album Publisher <albums@localhost>"
    #: Where the email's links point: the API's public address.
    app_base_url: str = "http://127.0.0.1:8000"
    notifier_concurrency: int = Field(default=2, ge=1, le=32)
