"""Rate limits: per client address on sign-in, per user on publish, retry and connect.

Flask-Limiter counts, in the storage RATE_LIMIT_STORAGE_URL names: `memory://` counts in each
process, Redis once for every API process. A refused request raises `TooManyRequests` with a
reason; the API answers it as JSON and the pages as a page, both with `Retry-After`
(`refusal`). If Redis stops answering, the limits count in the process's memory meanwhile
rather than failing requests (Flask-Limiter's in-memory fallback).

Sign-in is limited by what fails, not by the route: the sign-in form and every failed bearer
token check spend the address's allowance, and past it every token check from the address is
refused, the right token too, so a guesser cannot tell a hit from a miss.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import HTTPException, TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from .settings import ApiSettings

log = logging.getLogger(__name__)
View = TypeVar("View", bound=Callable[..., Any])

#: The window counted is the last N seconds at every moment, not calendar minutes: no burst
#: of twice the limit across a minute's boundary.
STRATEGY = "moving-window"


def client_address() -> str:
    """The client's address (ProxyFix has put the forwarded one there, API_PROXIES hops back)."""
    return request.remote_addr or "unknown"


def _user_key() -> str:
    return f"user:{g.user.id}"


limiter = Limiter(
    key_func=client_address, strategy=STRATEGY, swallow_errors=True, in_memory_fallback_enabled=True
)


def init_app(app: Flask, settings: ApiSettings) -> None:
    """Count in the configured storage; behind proxies, by the address they forwarded."""
    if settings.api_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.api_proxies)  # type: ignore[method-assign]
    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage_url
    if not settings.rate_limit_storage_url.startswith("memory"):
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"key_prefix": settings.rate_limit_key_prefix}
    limiter.init_app(app)
    app.extensions["signin_guard"] = SignInGuard(settings.signin_rate_limit)


def _settings() -> ApiSettings:
    settings: ApiSettings = current_app.extensions["services"].settings
    return settings


def per_user(
    scope: str, setting: Callable[[ApiSettings], str], what: str
) -> Callable[[View], View]:
    """Limit the decorated view per signed-in user (apply it inside `authenticated` or
    `signed_in`); every view with the same `scope` spends the same allowance."""

    def message() -> str:
        return f"Too many {what} (at most {describe(setting(_settings()))} for each user)"

    decorate = limiter.shared_limit(
        lambda: setting(_settings()), scope=scope, key_func=_user_key, error_message=message
    )
    return decorate  # type: ignore[return-value]


def describe(limit: str) -> str:
    return ", ".join(str(item) for item in parse_many(limit))


class SignInGuard:
    """The per-address allowance of sign-in attempts, in the limiter's storage."""

    def __init__(self, limit: str) -> None:
        self.limit = limit
        self.items: list[RateLimitItem] = parse_many(limit)
        self._fallback = MovingWindowRateLimiter(MemoryStorage())

    def check(self) -> None:
        """Raise TooManyRequests if the client's address has spent its allowance."""
        address = client_address()
        for item in self.items:
            if not self._call("test", item, address):
                reset, _remaining = self._call("get_window_stats", item, address)
                raise Refused(
                    f"Too many sign-in attempts from your address (at most {describe(self.limit)})",
                    reset - time.time(),
                )

    def spend(self) -> None:
        """Count one attempt (a form post, or a token that matched no user)."""
        for item in self.items:
            self._call("hit", item, client_address())

    def _call(self, method: str, item: RateLimitItem, address: str) -> Any:
        try:
            return getattr(limiter.limiter, method)(item, "sign-in", address)
        except Exception as exc:  # the storage away: count here rather than let guesses in
            log.warning(
                "rate limit storage unavailable (%s); counting sign-ins in memory",
                exc.__class__.__name__,
            )
            return getattr(self._fallback, method)(item, "sign-in", address)


def signin_guard() -> SignInGuard:
    guard: SignInGuard = current_app.extensions["signin_guard"]
    return guard


class Refused(TooManyRequests):
    """A request over a limit or a quota: the reason and, in seconds, when to try again."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(description=reason)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


def refusal(exc: HTTPException) -> tuple[str, dict[str, str]]:
    """A 429's reason with when to try again, and its Retry-After header (none for others)."""
    reason = exc.description or exc.name
    if isinstance(exc, Refused):
        seconds: int | None = exc.retry_after_s
    elif isinstance(exc, RateLimitExceeded):
        seconds = _seconds_left()
    else:
        return reason, {}
    if seconds is None:
        return reason, {}
    return f"{reason}; try again in {seconds} s", {"Retry-After": str(seconds)}


def _seconds_left() -> int | None:
    current = limiter.current_limit
    if current is None:
        return None
    try:
        return max(1, math.ceil(current.reset_at - time.time()))
    except Exception:  # the storage away: a minute is the longest default window
        return int(parse("1/minute").get_expiry())
