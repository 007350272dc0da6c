"""The uploader handler's tests of tests/integration/test_uploader_handler.py on PostgreSQL: the
one-statement start (`Store.take_image_unless_ended`), the claim and the ends under its row
locks and READ COMMITTED, not only SQLite's single writer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.store import Store
from tests.integration.test_uploader_handler import *  # noqa: F403 - the same tests, on PostgreSQL

pytestmark = pytest.mark.integration


# Overrides the conftest fixture of the same name for this module: the same tests, on PostgreSQL.
@pytest.fixture()
def sqlite_store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    store.create_schema()
    yield store
    store.dispose()
