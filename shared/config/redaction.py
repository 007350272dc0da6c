"""Connection strings as they may be shown: in logs, error messages and a printed settings
object. AMQP_URL and DATABASE_URL carry their password inside the URL (issue 11)."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """`url` with each password replaced by `***`; AMQP_URL's comma-separated nodes each."""
    return ",".join(_one(part) for part in url.split(","))


def _one(url: str) -> str:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # unreadable: show nothing of what may be a password
        return "<unreadable URL>"
    credentials, at, host = netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.partition(":")[0]
    return url.replace(netloc, f"{user}:***@{host}", 1)
