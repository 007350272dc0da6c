"""A PostgreSQL database of a test's, a bench row's or a chaos row's own: created under a random
name beside the admin URL's, dropped afterwards even while connections to it remain."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import create_engine, text


def _admin(admin_url: str, statement: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


def create_database(admin_url: str, name: str) -> str:
    """Create `name` on the admin URL's server; its URL."""
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def drop_database(admin_url: str, name: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database named `prefix` and a random suffix, dropped at the end; yields its URL."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)
