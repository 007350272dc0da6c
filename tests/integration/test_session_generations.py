"""Session generations in the store (issue 11): bumped by sign-out and a new token, and a store
made before they existed is upgraded in place with its users' sessions still valid."""

import pytest
from sqlalchemy import text

from shared.store import Store
from tests.present import present

from .test_outbox_upgrade import empty_store_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def test_sign_out_and_a_new_token_move_the_generation_on(empty_store_url: str) -> None:  # noqa: F811
    store = Store(empty_store_url)
    try:
        store.create_schema()
        user, token = store.create_user("gen@example.com")
        assert (
            present(store.user_by_token(token)).session_generation == user.session_generation == 0
        )
        store.end_sessions(user.id)
        assert present(store.user(user.id)).session_generation == 1
        rotated, new_token = present(store.rotate_token("gen@example.com"))
        assert rotated.session_generation == present(store.user(user.id)).session_generation == 2
        assert store.user_by_token(token) is None and store.user_by_token(new_token) is not None
        assert store.rotate_token("nobody@example.com") is None
    finally:
        store.dispose()


def test_a_store_made_before_session_generations_is_upgraded_in_place(empty_store_url: str) -> None:  # noqa: F811
    old = Store(empty_store_url)
    old.create_schema()
    user, token = old.create_user("old@example.com")
    with old.engine.begin() as connection:  # the users table as the older version made it
        connection.execute(text("ALTER TABLE users DROP COLUMN session_generation"))
    old.dispose()

    store = Store(empty_store_url)
    try:
        store.create_schema()
        assert present(store.user_by_token(token)).session_generation == 0
        store.end_sessions(user.id)
        assert present(store.user(user.id)).session_generation == 1
    finally:
        store.dispose()
