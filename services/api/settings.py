"""The API's settings (on top of those every service reads, shared/config/settings.py): how it
serves and bounds its clients (rate limits, the daily image quota), its pages, its thumbnails."""

from __future__ import annotations

import secrets
from pathlib import Path

from limits import parse_many
from pydantic import Field, SecretStr, field_validator

from shared.config.local_secrets import LOCAL_DIR, local_secret
from shared.config.settings import CommonSettings, Port, PortOrOff

#: Where a local run keeps the session key it made when API_SECRET_KEY is empty.
LOCAL_SESSION_KEY_FILE = LOCAL_DIR / "session-secret.key"
#: The Graph simulator's app secret: known to everyone, so refused in production.
SIMULATOR_APP_SECRET = "sim-app-secret"


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: Port = 8000
    #: /metrics on its own port and server (METRICS_HOST), never on API_PORT; 0: off.
    api_metrics_port: PortOrOff = 0
    #: Threads that run requests. The server's one I/O thread reads each request whole (headers
    #: and body) before a thread sees it, so a slow client holds none of them.
    api_threads: int = Field(default=16, ge=1)
    #: Seconds for a request's line and headers to arrive, counted from the connection's
    #: opening or the end of its previous answer; late, the connection is closed.
    api_header_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds for a request's body to arrive once its headers have; late, the connection is
    #: closed and the app never sees the request.
    api_body_timeout_s: float = Field(default=30.0, gt=0)
    #: The largest request body; a larger one is answered 413 from its Content-Length, unread.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Connections held open at once; more wait in the listen backlog. The process raises its
    #: open-file limit to fit them (see services/api/file_limits.py).
    api_max_connections: int = Field(default=1000, ge=10)
    max_album_images: int = Field(default=200, ge=1)
    #: Images of one album in the work queue at once (decided when it is published): albums
    #: take turns (docs/fair-turns.md). At least the uploaders' total concurrency,
    #: UPLOADER_CONCURRENCY x processes, so that a lone album uses them all.
    album_window: int = Field(default=8, ge=1)
    #: The dead-letter desk (docs in the README): an album is stuck once this many seconds
    #: passed since its unfinished images' latest due time (lease, retry time, queued at).
    desk_stuck_grace_s: float = Field(default=300.0, ge=0)
    #: At most this many letters per group or album action (the rest: press again).
    desk_action_limit: int = Field(default=500, ge=1, le=5000)
    #: Signs the web pages' session cookie: a long random string, the same in every process.
    #: Required in production; unset in a local run, a random key is made once and kept in
    #: var/session-secret.key (so every process of the run agrees on it).
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
    #: Previews made at once (each decodes an image in memory); more wait API_THUMBNAIL_WAIT_S,
    #: then get 503 with Retry-After.
    api_thumbnail_renders: int = Field(default=2, ge=1)
    api_thumbnail_wait_s: float = Field(default=5.0, ge=0)
    #: An image that would decode to more pixels than this gets a "too large to preview"
    #: placeholder, refused from its header (a JPEG counts at the reduced size it decodes at).
    api_thumbnail_max_pixels: int = Field(default=25_000_000, ge=1)

    #: The Facebook app that users log in through to connect their Page (docs/facebook-login.md).
    facebook_app_id: str = "sim-app"
    facebook_app_secret: SecretStr = SecretStr(SIMULATOR_APP_SECRET)
    #: Where Facebook Login's dialog lives: https://www.facebook.com in production; the
    #: simulator serves it locally.
    facebook_dialog_url: str = "http://127.0.0.1:8010"

    @field_validator(
        "signin_rate_limit", "publish_rate_limit", "retry_rate_limit", "connect_rate_limit"
    )
    @classmethod
    def _readable_limit(cls, value: str) -> str:
        # A typo fails at start with its reason, not on the first request it would limit.
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit like '10 per minute': {exc}") from None
        return value

    def production_problems(self) -> list[str]:
        problems = [*super().production_problems(), *self.token_keys_problems()]
        if not self._secret_key():
            problems.append(
                "API_SECRET_KEY must be set (a long random string, the same in every API process)"
            )
        if self.facebook_app_secret.get_secret_value() in ("", SIMULATOR_APP_SECRET):
            problems.append(
                "FACEBOOK_APP_SECRET must be your Facebook app's secret, not the "
                "simulator's default"
            )
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

    def sse_streams_per_user(self) -> int:
        return self.api_sse_streams_per_user or max(1, self.sse_streams() // 2)
