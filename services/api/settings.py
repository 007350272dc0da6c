"""The API's settings (on top of those every service reads, shared/settings.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr

from shared.local_secrets import LOCAL_DIR, local_secret
from shared.settings import CommonSettings

#: Where a local run keeps the session key it made when API_SECRET_KEY is empty.
LOCAL_SESSION_KEY_FILE = LOCAL_DIR / "session-secret.key"
#: The Graph simulator's app secret: known to everyone, so refused in production.
SIMULATOR_APP_SECRET = "sim-app-secret"


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: gunicorn processes and threads per process.
    api_workers: int = Field(default=2, ge=1)
    api_threads: int = Field(default=8, ge=1)
    max_album_images: int = Field(default=200, ge=1)
    #: Signs the web pages' session cookie: a long random string, the same in every process.
    #: Required in production; unset in a local run, a random key is made once and kept in
    #: var/session-secret.key (so the gunicorn workers agree on it).
    api_secret_key: SecretStr | None = None
    #: Send the session cookie over HTTPS only (as __Host-albums_session), and HSTS, even on
    #: answers that came over http: for a local run behind a TLS proxy. Production and https
    #: requests always do.
    api_cookie_secure: bool = False
    #: Days a sign-in lasts, from the sign-in (using the site does not extend it).
    api_session_days: int = Field(default=14, ge=1)
    #: Seconds one live-progress stream stays open before the browser is asked to reconnect.
    api_sse_max_s: float = Field(default=300.0, gt=0)
    #: Live-progress streams one process holds open at once; each holds one of its
    #: API_THREADS threads, so the default leaves half of them for everything else. Browsers
    #: beyond the limit get a snapshot and reconnect a few seconds later (polling).
    api_sse_streams: int | None = Field(default=None, ge=1)

    #: The Facebook app that users log in through to connect their Page (docs/facebook-login.md).
    facebook_app_id: str = "sim-app"
    facebook_app_secret: SecretStr = SecretStr(SIMULATOR_APP_SECRET)
    #: Where Facebook Login's dialog lives: https://www.facebook.com in production; the
    #: simulator serves it locally.
    facebook_dialog_url: str = "http://127.0.0.1:8010"

    def production_problems(self) -> list[str]:
        problems = [*super().production_problems(), *self.token_keys_problems()]
        if not self._secret_key():
            problems.append("API_SECRET_KEY must be set (a long random string, the same in "
                            "every API process)")
        if self.facebook_app_secret.get_secret_value() in ("", SIMULATOR_APP_SECRET):
            problems.append("FACEBOOK_APP_SECRET must be your Facebook app's secret, not the "
                            "simulator's default")
        return problems

    @property
    def cookies_secure(self) -> bool:
        """Whether every answer is known to reach the browser over https (a TLS proxy)."""
        return self.api_cookie_secure or self.app_env == "production"

    def session_secret(self, local_file: Path = LOCAL_SESSION_KEY_FILE) -> str:
        """API_SECRET_KEY, or in a local run a random key made once under var/."""
        return self._secret_key() or local_secret(local_file, lambda: secrets.token_urlsafe(48))

    def _secret_key(self) -> str:
        return self.api_secret_key.get_secret_value() if self.api_secret_key else ""

    def sse_streams(self) -> int:
        return self.api_sse_streams or max(1, self.api_threads // 2)
