"""`make run`'s demo user publishes to the simulator's Page with the token this run's simulator
accepts, on every start: a Page connected through the simulated Facebook Login in an earlier
run holds a token the restarted simulator never issued."""

from __future__ import annotations

from cryptography.fernet import Fernet
from pydantic import SecretStr

from dev.graph_simulator import DEFAULT_PAGE_ID, DEFAULT_PAGE_TOKEN
from dev.seed import connect_demo_page
from services.api.settings import ApiSettings
from shared.config.token_cipher import cipher_from_setting
from shared.store import PageState
from tests.present import present
from tests.unit.stores import new_store

KEY = Fernet.generate_key().decode()


def _settings() -> ApiSettings:
    return ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        api_secret_key=SecretStr("k"),
        token_encryption_keys=SecretStr(KEY),
    )


def _token(store_token: bytes) -> str:
    return cipher_from_setting(KEY).decrypt(store_token)


def test_a_new_demo_user_gets_the_simulators_page() -> None:
    store = new_store()
    user, _ = store.create_user("demo@example.com")
    connect_demo_page(store, _settings(), user.id)
    page = present(store.page(user.id))
    assert (page.page_id, page.state) == (DEFAULT_PAGE_ID, PageState.CONNECTED)
    credentials = present(store.page_credentials(user.id, DEFAULT_PAGE_ID))
    assert _token(credentials.token_sealed) == DEFAULT_PAGE_TOKEN


def test_a_page_connected_in_an_earlier_run_is_connected_again_and_its_photos_resume() -> None:
    store = new_store()
    user, _ = store.create_user("demo@example.com")
    cipher = cipher_from_setting(KEY)
    # What reconnecting through the simulated Facebook Login left: a token of that run only,
    # refused since (the restarted simulator never issued it), its album's photo paused.
    store.connect_page(user.id, DEFAULT_PAGE_ID, "Demo Page", cipher.encrypt("issued-last-run"))
    album_id, rows = store.create_album(
        user.id, "Before", None, [f"{user.prefix}a.png"], page_id=DEFAULT_PAGE_ID
    )
    store.mark_published([row.id for row in rows])
    image_id = present(store.album(album_id)).images[0].id
    refused = present(store.page_credentials(user.id, DEFAULT_PAGE_ID)).token_sealed
    assert store.pause_for_page(image_id, "reconnect", 190, False, refused=refused)
    assert present(store.page(user.id)).state == PageState.NEEDS_RECONNECT
    connect_demo_page(store, _settings(), user.id)
    credentials = present(store.page_credentials(user.id, DEFAULT_PAGE_ID))
    assert _token(credentials.token_sealed) == DEFAULT_PAGE_TOKEN
    assert present(store.page(user.id)).state == PageState.CONNECTED
    assert present(store.album(album_id)).images[0].state == "queued"
    assert store.unpublished_count() == 1  # its upload message, for the API's outbox relay


def test_the_page_already_connected_with_the_simulators_token_is_left_as_it_is() -> None:
    store = new_store()
    user, _ = store.create_user("demo@example.com")
    connect_demo_page(store, _settings(), user.id)
    connected_at = present(store.page(user.id)).connected_at
    connect_demo_page(store, _settings(), user.id)
    assert present(store.page(user.id)).connected_at == connected_at


def test_a_token_sealed_under_a_key_since_removed_is_sealed_again() -> None:
    store = new_store()
    user, _ = store.create_user("demo@example.com")
    other = cipher_from_setting(Fernet.generate_key().decode())
    store.connect_page(user.id, DEFAULT_PAGE_ID, "Demo Page", other.encrypt(DEFAULT_PAGE_TOKEN))
    connect_demo_page(store, _settings(), user.id)
    credentials = present(store.page_credentials(user.id, DEFAULT_PAGE_ID))
    assert _token(credentials.token_sealed) == DEFAULT_PAGE_TOKEN
