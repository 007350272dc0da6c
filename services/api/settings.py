"""The API's settings (API_*, the rate limits and the daily quota, Facebook Login)."""

from __future__ import annotations

import hashlib

from limits import parse_many
from pydantic import Field, SecretStr, field_validator

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: gunicorn processes and threads per process.
    api_workers: int = Field(default=2, ge=1)
    api_threads: int = Field(default=8, ge=1)
    max_album_images: int = Field(default=200, ge=1)
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
    #: Live-progress streams one user holds open at once in one process (default: half of
    #: API_SSE_STREAMS), so that one user cannot take every slot; past it a stream is a 429.
    api_sse_streams_per_user: int | None = Field(default=None, ge=1)
    #: Proxies in front of the API that append the client's address to X-Forwarded-For: the
    #: per-address limits count the address that many hops back. 0: the peer's own address.
    api_proxies: int = Field(default=0, ge=0)

    #: Where the rate limits count: `memory://` (each process on its own), or Redis
    #: (`redis://host:6379/N`), shared by every API process.
    rate_limit_storage_url: str = "memory://"
    #: Prefix of the rate limits' keys in Redis (a Redis shared with other applications).
    rate_limit_key_prefix: str = "albums"
    #: Per client address: sign-in form posts and failed token checks (brute force).
    signin_rate_limit: str = "10 per minute"
    #: Per user: albums published (the API and the publish page together).
    publish_rate_limit: str = "30 per minute"
    #: Per user: "retry failed images" (the API and the album page together).
    retry_rate_limit: str = "10 per minute"
    #: Per user: the steps of connecting a Facebook Page (start, callback, pick, disconnect).
    connect_rate_limit: str = "10 per minute"
    #: Per user: images of the albums created in the last 24 hours (by the database's clock).
    #: What bounds one user's spend of the Page's and the app's Graph quota.
    images_per_day: int = Field(default=2000, ge=1)

    #: The Facebook app that users log in through to connect their Page (docs/facebook-login.md).
    facebook_app_id: str = "sim-app"
    facebook_app_secret: SecretStr = SecretStr("sim-app-secret")
    #: Where Facebook Login's dialog lives: https://www.facebook.com in production; the
    #: simulator serves it locally.
    facebook_dialog_url: str = "http://127.0.0.1:8010"

    @field_validator("signin_rate_limit", "publish_rate_limit", "retry_rate_limit",
                     "connect_rate_limit")
    @classmethod
    def _readable_limit(cls, value: str) -> str:
        # A typo fails at start with its reason, not on the first request it would limit.
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit like '10 per minute': {exc}") from None
        return value

    def session_secret(self) -> str:
        if self.api_secret_key is not None and self.api_secret_key.get_secret_value():
            return self.api_secret_key.get_secret_value()
        seed = f"album-publisher local session key:{self.database_url}"
        return hashlib.sha256(seed.encode()).hexdigest()

    def sse_streams(self) -> int:
        return self.api_sse_streams or max(1, self.api_threads // 2)

    def sse_streams_per_user(self) -> int:
        return self.api_sse_streams_per_user or max(1, self.sse_streams() // 2)
