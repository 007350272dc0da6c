"""An album id no album can have is "no such album" on either store, never "the store is
unavailable": PostgreSQL refuses a NUL byte in a text parameter (a DataError the API used to
answer 503 to, as it does for a store that is down)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.store import Store

from .test_api_publish import Api, api_on

pytestmark = pytest.mark.integration

MALFORMED = ["ab%00c", "%00", "x" * 300, "%C3%A9t%C3%A9"]


@pytest.fixture()
def api(store: Store, amqp_url: str) -> Iterator[Api]:
    with api_on(store, amqp_url) as api:
        yield api


@pytest.mark.parametrize("album_id", MALFORMED)
def test_a_malformed_album_id_is_not_found(api: Api, album_id: str) -> None:
    client = api.app.test_client()
    auth = {"Authorization": f"Bearer {api.token}"}
    for response in (
        client.get(f"/api/albums/{album_id}", headers=auth),
        client.post(f"/api/albums/{album_id}/retry", headers=auth),
    ):
        assert response.status_code == 404, response.get_data(as_text=True)
        assert response.get_json()["error"] == "no such album"


def test_the_store_finds_no_album_by_an_id_with_a_nul_byte(store: Store) -> None:
    assert store.album("ab\x00c") is None
