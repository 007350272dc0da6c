"""The unit tests' pooled stores (tests/unit/stores.py): each test gets its stores empty, and
as `Store(url)` makes them, though the session reuses them."""

from __future__ import annotations

from typing import Any

from tests.unit import stores


def test_a_store_handed_back_comes_again_empty_and_unpatched() -> None:
    first = stores.new_store()
    user, _ = first.create_user("ann@example.com")
    first.create_album(user.id, "Trip", None, [f"{user.prefix}a.png"])

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a test's failing store")

    first.record_uploaded = broken  # type: ignore[method-assign, assignment]
    second = stores.new_store()
    assert second is not first  # two stores in one test share nothing
    assert second.user_by_token("x") is None and second.albums(user.id) == []
    stores.hand_back()  # as after a test
    again = stores.new_store()
    assert again is first
    assert again.albums(user.id) == [] and "record_uploaded" not in vars(again)
    assert again.create_user("ann@example.com")[0].id == user.id  # ids start again at 1
