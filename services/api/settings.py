from __future__ import annotations

import hashlib

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: gunicorn processes and threads per process.
    api_workers: int = Field(default=2, ge=1)
    api_threads: int = Field(default=8, ge=1)
    max_album_images: int = Field(default=200, ge=1)
    #: Images of one album in the work queue at once (decided when it is published): albums
    #: take turns (docs/fair-turns.md). At least the uploaders' total concurrency,
    #: UPLOADER_CONCURRENCY x processes, so that a lone album uses them all.
    album_window: int = Field(default=8, ge=1)
    #: Signs the web pages' session cookie. PRODUCTION must set it (a long random string, the
    #: same in every process): unset, it is derived from DATABASE_URL so that the gunicorn
    #: workers of a local run agree on it, which is no secret at all.
    api_secret_key: SecretStr | None = None
    #: Send the session cookie over HTTPS only. PRODUCTION (behind https): true.
    api_cookie_secure: bool = False
    #: Days a sign-in lasts.
    api_session_days: int = Field(default=14, ge=1)
    #: Seconds one live-progress stream stays open before the browser is asked to reconnect.
    api_sse_max_s: float = Field(default=300.0, gt=0)
    #: Live-progress streams one process holds open at once; each holds one of its
    #: API_THREADS threads, so the default leaves half of them for everything else. Browsers
    #: beyond the limit get a snapshot and reconnect a few seconds later (polling).
    api_sse_streams: int | None = Field(default=None, ge=1)

    #: The Facebook app that users log in through to connect their Page (docs/facebook-login.md).
    facebook_app_id: str = "sim-app"
    facebook_app_secret: SecretStr = SecretStr("sim-app-secret")
    #: Where Facebook Login's dialog lives: https://www.facebook.com in production; the
    #: simulator serves it locally.
    facebook_dialog_url: str = "http://127.0.0.1:8010"

    def session_secret(self) -> str:
        if self.api_secret_key is not None and self.api_secret_key.get_secret_value():
            return self.api_secret_key.get_secret_value()
        seed = f"album-publisher local session key:{self.database_url}"
        return hashlib.sha256(seed.encode()).hexdigest()

    def sse_streams(self) -> int:
        return self.api_sse_streams or max(1, self.api_threads // 2)
