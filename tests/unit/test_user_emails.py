"""A user's email, as `python -m services.api create-user` and the store take it: an email
address or a clear refusal, and one user per address whatever its case (notify_email is
compared case-insensitively too). A store holding two users that differ only by case, made
before this rule, still starts; a lookup then prefers the exact spelling."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from services.api.__main__ import create_user, rotate_token
from services.api.settings import ApiSettings
from shared.store import AmbiguousEmail, Store
from shared.store.tables import User
from tests.unit.stores import new_store


def _settings(tmp_path: Path) -> ApiSettings:
    return ApiSettings(_env_file=None, database_url=f"sqlite:///{tmp_path}/cli.db")  # type: ignore[call-arg]


def _users(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(User)) or 0)


@pytest.mark.parametrize("email", ["not-an-email", "bob@", "@example.com", "bob example.com", ""])
def test_create_user_refuses_what_is_not_an_email_address(
    email: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(SystemExit) as refused:
        create_user(settings, email)
    assert str(refused.value.code).startswith(f"create-user: {email!r} is not an email address")
    assert capsys.readouterr().out == ""  # no token printed
    store = Store(settings.database_url)
    store.create_schema()
    assert _users(store) == 0
    store.dispose()


@pytest.mark.parametrize("email", ["admin@localhost", "ops@corp.local", "a@b.test", "x@[::1]"])
def test_create_user_takes_an_installs_own_domains(
    email: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_user(_settings(tmp_path), email)
    assert f'"email": "{email}"' in capsys.readouterr().out


def test_create_user_in_another_case_is_the_same_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    create_user(settings, "bob@example.com")
    first = capsys.readouterr().out
    create_user(settings, "BOB@Example.COM")
    again = capsys.readouterr().out
    assert '"id": 1' in first and '"id": 1' in again and '"email": "bob@example.com"' in again
    store = Store(settings.database_url)
    assert _users(store) == 1
    store.dispose()
    rotate_token(settings, "Bob@example.com")
    assert '"email": "bob@example.com"' in capsys.readouterr().out


def test_every_lookup_by_email_ignores_case() -> None:
    store = new_store()
    bob, _ = store.create_user("bob@example.com")
    assert store.create_user("BOB@EXAMPLE.COM")[0].id == bob.id
    rotated = store.rotate_token("Bob@Example.com")
    assert rotated is not None and rotated[0].id == bob.id
    operator = store.set_role("BOB@example.com", "operator")
    assert operator is not None and (operator.id, operator.role) == (bob.id, "operator")


def test_a_store_with_two_users_differing_by_case_starts_and_takes_only_an_exact_one() -> None:
    store = new_store()
    _two_spellings_of_bob(store)
    store.create_schema()  # starts as it did
    exact = store.rotate_token("BOB@example.com")
    assert exact is not None and exact[0].email == "BOB@example.com"
    # Neither exact: no guess (a role or a token for the wrong one), the spellings named.
    for act in (store.rotate_token, lambda e: store.set_role(e, "operator"), store.create_user):
        with pytest.raises(AmbiguousEmail, match="bob@example.com, BOB@example.com"):
            act("Bob@Example.com")
    assert store.create_user("BOB@example.com")[0].email == "BOB@example.com"
    assert _users(store) == 2
    assert all(role is None for role in _roles(store))


def _two_spellings_of_bob(store: Store) -> None:
    """Two users whose addresses differ only by case, as an older version could make them."""
    with store.engine.begin() as connection:
        for email, token in (("bob@example.com", "a" * 64), ("BOB@example.com", "b" * 64)):
            connection.execute(
                insert(User).values(email=email, token_hash=token, prefix="", session_generation=0)
            )


def _roles(store: Store) -> list[str | None]:
    with store.engine.connect() as connection:
        return list(connection.scalars(select(User.role)))


def test_the_commands_say_which_spellings_an_ambiguous_address_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.__main__ import main

    url = f"sqlite:///{tmp_path}/cli.db"
    store = Store(url)
    store.create_schema()
    _two_spellings_of_bob(store)
    store.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    for command in ("rotate-token", "make-operator", "create-user"):
        monkeypatch.setattr("sys.argv", ["python -m services.api", command, "Bob@example.com"])
        with pytest.raises(SystemExit) as refused:
            main()
        assert str(refused.value.code) == (
            f"{command}: Bob@example.com names several users (bob@example.com, "
            "BOB@example.com): give its exact spelling"
        )
