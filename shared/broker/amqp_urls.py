"""`AMQP_URL` as a list of broker nodes: the rule for reading it, with no pika.

The value is one or more entries separated by commas. The first entry is a full URL
(`amqp://user:password@host:port/vhost?query`, or `amqps://`). Each later entry is either a full
URL of its own or only `host[:port]` (`[v6 address]:port`), which borrows everything else (scheme,
credentials, vhost, query) from the first URL. A comma inside a password is written `%2C`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from shared.config.redaction import redact_url

_SCHEMES = ("amqp", "amqps")


class BadAmqpUrl(ValueError):
    """AMQP_URL cannot be read; the message names the entry and what is wrong with it."""


def split_urls(value: str) -> list[str]:
    """One full URL per node, in the order written."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        raise BadAmqpUrl("AMQP_URL is empty: give at least one amqp:// URL")
    first = _checked(entries[0], position=1)
    return [first] + [
        _checked(_with_first(entry, first), position)
        for position, entry in enumerate(entries[1:], start=2)
    ]


def _with_first(entry: str, first: str) -> str:
    """A bare `host[:port]` takes the first URL's scheme, credentials, vhost and query."""
    if "://" in entry:
        return entry
    if "/" in entry or "@" in entry or "?" in entry:
        raise BadAmqpUrl(
            f"AMQP_URL entry {entry!r}: a bare entry is only host[:port]; "
            "write a full amqp:// URL for other credentials or another vhost"
        )
    parts = urlsplit(first)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{entry}" if credentials else entry
    return urlunsplit(parts._replace(netloc=netloc))


def _checked(url: str, position: int) -> str:
    parts = urlsplit(url)
    where = f"AMQP_URL entry {position} ({redact_url(url)!r})"
    if parts.scheme not in _SCHEMES:
        raise BadAmqpUrl(f"{where}: must start with amqp:// or amqps://")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise BadAmqpUrl(f"{where}: {exc}") from None
    if not parts.hostname:
        raise BadAmqpUrl(f"{where}: names no host")
    return url


def node_label(url: str) -> str:
    """`host:port` of one node's URL, for logs (never its credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
